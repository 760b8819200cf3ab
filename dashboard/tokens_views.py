"""The API tokens page (``/tokens/``): a person's personal API tokens, created and revoked.

A new token is shown once, on the response to the POST that created it; only its SHA-256 is
stored (``dashboard.models.tokens``)."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.models import ApiToken
from dashboard.models.tokens import SCOPE_CHOICES


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="what the token is for, e.g. prometheus")
    scope = forms.ChoiceField(choices=SCOPE_CHOICES, initial="read")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    created = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            token, created = ApiToken.issue(
                request.user, form.cleaned_data["name"], form.cleaned_data["scope"]
            )
            form = TokenForm()
        else:
            status = 400
    context = {
        "form": form,
        "created": created,
        "tokens": ApiToken.objects.filter(user=request.user),
    }
    return render(request, "dashboard/tokens.html", context, status=status)


@login_required
@require_POST
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    get_object_or_404(ApiToken, pk=pk, user=request.user).revoke()
    return redirect("tokens")
