#!/usr/bin/env bash
# Builds the directory the run_command comparison runs in (argument: the
# directory). The same tree is searched by run_command and by GNU tools.
set -euo pipefail
cd "$1"
mkdir -p app/utils static logs .hidden proj/.git proj/src proj/build a/b/c docs
cat > app/__init__.py <<'X'
X
cat > app/views.py <<'X'
from django.shortcuts import render, get_object_or_404
from .models import Post, Comment


def post_list(request, tag_slug=None):
    posts = Post.published.all()
    return render(request, "blog/post/list.html", {"posts": posts})


def post_detail(request, year, month, day, slug):
    post = get_object_or_404(Post, slug=slug)
    # TODO: paginate comments
    comments = post.comments.filter(active=True)
    return render(request, "blog/post/detail.html", {"post": post})


class PostView:
    def get(self, request):
        return post_list(request)


async def post_feed(request):
    """The latest posts as JSON."""
    posts = [p async for p in Post.published.all()[:10]]
    return {"posts": [p.title for p in posts]}
X
cat > app/models.py <<'X'
from django.db import models


class Post(models.Model):
    title = models.CharField(max_length=250)
    slug = models.SlugField(max_length=250)
    body = models.TextField()

    def __str__(self):
        return self.title


class Comment(models.Model):
    post = models.ForeignKey(Post, on_delete=models.CASCADE)
    body = models.TextField()
    active = models.BooleanField(default=True)
X
cat > app/serializers.py <<'X'
from rest_framework import serializers


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        fields = ["id", "username", "email"]


class PostSerializer(serializers.ModelSerializer):
    author = UserSerializer(read_only=True)
X
cat > app/utils/helpers.py <<'X'
import asyncio


async def fetch_all(urls):
    return await asyncio.gather(*[fetch(u) for u in urls])


def slugify(text):
    return text.lower().replace(" ", "-")
X
cat > static/app.js <<'X'
// TODO: move to a module
const API = "/api/posts";
function loadPosts() {
  return fetch(API).then((r) => r.json());
}
async function refresh() {
  const posts = await loadPosts();
  console.log(posts.length);
}
X
cat > README.md <<'X'
# Blog

A small Django blog. Café & résumé support.
Run it with `python manage.py runserver`.

## Views
post_list and post_detail render templates.
X
cat > notes.txt <<'X'
banana 3
apple 10
Cherry 2
apple 10
date 25
banana 3
elderberry 1
X
cat > data.csv <<'X'
id,name,score,city
3,carol,88,Paris
1,alice,92,Berlin
2,bob,75,Paris
4,dave,92,Rome
X
cat > logs/app.log <<'X'
2024-01-01 INFO started
2024-01-01 ERROR db timeout
2024-01-02 INFO request /posts
2024-01-02 WARN slow query
2024-01-03 ERROR db timeout
2024-01-03 INFO stopped
X
printf 'secret=1\n' > .hidden/secret.txt
printf 'header\0binary post_list\n' > bin.dat
: > empty.txt
printf 'spaced post_list\n' > 'with space.txt'
printf 'no newline at end post_list' > nonl.txt
printf 'ref: refs/heads/main\n' > proj/.git/HEAD
printf 'build/\n*.log\n' > proj/.gitignore
printf 'def main():\n    print("hi")\n' > proj/src/main.py
printf 'def built():\n    pass\n' > proj/build/out.py
printf 'def logged\n' > proj/debug.log
printf 'deep post_list\n' > a/b/c/deep.txt
printf 'one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\neleven\ntwelve\n' > docs/numbers.txt
ln -s app/views.py link_to_views.py
