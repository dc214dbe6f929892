from django.contrib import admin
from django.urls import path

from p import views

urlpatterns = [
    path("form/", views.form),
    path("admin/", admin.site.urls),
]
