from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView


class PagePagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def paginated_response(
    *, request: Request, view: APIView, queryset: Any, serializer_class: type
) -> Response:
    """One page of `queryset` serialized with `serializer_class`, with count/next/previous."""
    paginator = PagePagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


def query_choice(request: Request, name: str, choices: list[str]) -> str | None:
    """The query parameter `name` if given; a 400 naming it when it is not one of `choices`."""
    value = request.query_params.get(name) or None
    if value is not None and value not in choices:
        raise serializers.ValidationError({name: [f"One of {', '.join(choices)}."]})
    return value
