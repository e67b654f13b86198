"""Background work that talks to the network: run with asyncio, outside requests."""

import asyncio

from django.core.mail import send_mail

from .models import Post


async def send_digest(user):
    posts = [post async for post in Post.published.all()[:5]]
    lines = "\n".join(f"- {post.title}" for post in posts)
    await asyncio.to_thread(
        send_mail, "This week on the blog", lines, None, [user.email]
    )


async def notify_subscribers(post, users):
    await asyncio.gather(*(send_digest(user) for user in users))
    return len(users)
