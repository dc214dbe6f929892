"""A form behind Django's CSRF protection: GET shows it (with the token),
POST answers what it was sent, and from which address."""
from django.http import HttpResponse
from django.shortcuts import render


def form(request):
    if request.method == "POST":
        body = "thanks %s, from %s\n" % (request.POST.get("name", ""), request.META.get("REMOTE_ADDR"))
        return HttpResponse(body, content_type="text/plain")
    return render(request, "form.html")
