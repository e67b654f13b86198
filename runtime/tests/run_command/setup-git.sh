#!/usr/bin/env bash
# Builds a small git repository with a known history and uncommitted
# changes (argument: the directory), for run_command's git.
set -euo pipefail
cd "$1"
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
git init -q -b main .
git config user.name "Ann Author"
git config user.email ann@example.com
commit() {
  GIT_AUTHOR_DATE="$1" GIT_COMMITTER_DATE="$1" git commit -q -m "$2"
}
mkdir -p app docs
printf 'from django.http import JsonResponse\n\n\ndef index(request):\n    return JsonResponse({"ok": True})\n' > app/views.py
printf 'class Post:\n    title = ""\n\n    def __str__(self):\n        return self.title\n' > app/models.py
printf '# Demo\n\nA demo project.\n' > README.md
git add . && commit "2024-03-05T10:20:30+0100" "Initial commit"
printf 'from django.http import JsonResponse\n\n\ndef index(request):\n    return JsonResponse({"ok": True})\n\n\ndef detail(request, pk):\n    return JsonResponse({"pk": pk})\n' > app/views.py
printf 'Usage: run the server.\n' > docs/usage.md
git add . && commit "2024-03-06T08:00:00-0500" "Add detail view

The detail view returns one post by primary key."
printf 'class Post:\n    title = ""\n    body = ""\n\n    def __str__(self):\n        return self.title\n\n\nclass Comment:\n    pass\n' > app/models.py
git rm -q docs/usage.md
git add . && commit "2024-04-01T12:00:00+0000" "Models: body and Comment; drop usage doc"
# Uncommitted: a modified file, a deleted file, an untracked file.
printf '# Demo\n\nA demo project with posts.\n' > README.md
printf 'def helper():\n    pass\n' > app/untracked.py
rm app/models.py
