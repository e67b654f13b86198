from django.contrib.auth import get_user_model
from rest_framework import serializers

from .models import Comment, Post, Tag


class UserSerializer(serializers.ModelSerializer):
    """Public view of a post's author: no email, no password hash."""

    post_count = serializers.IntegerField(source="posts.count", read_only=True)

    class Meta:
        model = get_user_model()
        fields = ["id", "username", "first_name", "last_name", "post_count"]
        read_only_fields = fields


class TagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["name", "slug"]


class CommentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Comment
        fields = ["id", "name", "body", "created_at"]


class PostSerializer(serializers.ModelSerializer):
    author = UserSerializer(read_only=True)
    tags = TagSerializer(many=True, read_only=True)
    url = serializers.CharField(source="get_absolute_url", read_only=True)

    class Meta:
        model = Post
        fields = ["id", "title", "slug", "author", "tags", "body", "published_at", "url"]
