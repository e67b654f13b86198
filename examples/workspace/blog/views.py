from django.conf import settings
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render

from .forms import CommentForm
from .models import Post, Tag
from .serializers import PostSerializer


def post_list(request, tag_slug=None):
    posts = Post.published.all()
    tag = None
    if tag_slug:
        tag = get_object_or_404(Tag, slug=tag_slug)
        posts = posts.filter(tags=tag)
    paginator = Paginator(posts, settings.PAGINATE_BY)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "blog/post_list.html", {"page": page, "tag": tag})


def post_detail(request, year, month, day, slug):
    post = get_object_or_404(
        Post.published,
        slug=slug,
        published_at__year=year,
        published_at__month=month,
        published_at__day=day,
    )
    comments = post.comments.filter(active=True)
    if request.method == "POST":
        form = CommentForm(request.POST)
        if form.is_valid():
            comment = form.save(commit=False)
            comment.post = post
            comment.save()
            return redirect(post.get_absolute_url())
    else:
        form = CommentForm()
    return render(
        request,
        "blog/post_detail.html",
        {"post": post, "comments": comments, "form": form},
    )


async def post_feed(request):
    """The latest published posts as JSON, for the front page's feed."""
    posts = [post async for post in Post.published.select_related("author")[:20]]
    return JsonResponse({"posts": [PostSerializer(post).data for post in posts]})
