from datetime import timedelta

from django.contrib.auth import get_user_model
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from .models import Post


class PublishedManagerTests(TestCase):
    def setUp(self):
        self.author = get_user_model().objects.create_user("ada", password="pw")

    def make_post(self, **kwargs):
        defaults = {"title": "Hello", "slug": "hello", "author": self.author, "body": "Hi."}
        defaults.update(kwargs)
        return Post.objects.create(**defaults)

    def test_drafts_are_hidden(self):
        self.make_post(status=Post.Status.DRAFT)
        self.assertEqual(Post.published.count(), 0)

    def test_future_posts_are_hidden(self):
        self.make_post(
            status=Post.Status.PUBLISHED,
            published_at=timezone.now() + timedelta(days=1),
        )
        self.assertEqual(Post.published.count(), 0)

    def test_list_shows_published(self):
        self.make_post(status=Post.Status.PUBLISHED)
        response = self.client.get(reverse("blog:post_list"))
        self.assertContains(response, "Hello")
