"""REST API defaults shared by every app's ``api/`` package.

- ``api_exception_handler``: one error body for every failure,
  ``{"error": {"code", "message", "fields"?}}``, and never a traceback, SQL or
  secret (a 500 answers a generic message quoting the request id only).
- ``ApiPagination``: page-number pagination whose oversized ``page_size`` is a
  400, not a silent clamp, so a client learns its request was not honoured.
- ``ProjectScopedViewSet``: lists through ``scoped`` and details through
  ``access_object`` (deny by default; model-level permissions and superuser
  status grant nothing; another project's object is a 404).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, models
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import set_rollback

from governance.access import access_object, scoped
from governance.audit import Refused
from governance.roles import VIEW
from migration.engine.errors import EngineError, TransientError
from pasportal.middleware import current_request_id

log = logging.getLogger("pasportal.api")

#: How a service's refusal code becomes an HTTP status. Anything not listed is a
#: conflict with the object's state (four-eyes, illegal transition, ...).
#: Services are not uniform about the permission code ("forbidden",
#: "permission"): all of those answer 403 with the code ``forbidden``.
PERMISSION_CODES = frozenset({"forbidden", "permission", "permission_denied"})
#: Refusals that say the request itself was wrong (400), not the object's state.
BAD_INPUT_CODES = frozenset(
    {
        "invalid",
        "bad_request",
        "unknown_profile",
        "unknown_check",
        "no_reason",
        "bad_expiry",
        "bad_decision",
        "role_not_required",
    }
)


def refused_status(code: str) -> int:
    """Return the HTTP status of a service refusal code (default 409 Conflict)."""
    if code in PERMISSION_CODES:
        return status.HTTP_403_FORBIDDEN
    if code in BAD_INPUT_CODES:
        return status.HTTP_400_BAD_REQUEST
    if code == "not_found":
        return status.HTTP_404_NOT_FOUND
    return status.HTTP_409_CONFLICT


_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "malformed_request",
    exceptions.ValidationError: "invalid",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def error_body(
    code: str, message: str, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return the API's error body."""
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def _fields(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {str(k): v for k, v in detail.items()}
    if isinstance(detail, list):
        return {"non_field_errors": detail}
    return {"non_field_errors": [str(detail)]}


def _drf_response(exc: exceptions.APIException) -> Response:
    code = next(
        (c for klass, c in _DRF_CODES.items() if type(exc) is klass),
        str(getattr(exc, "default_code", "error")),
    )
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = str(exc.auth_header)
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
    if isinstance(exc, exceptions.ValidationError):
        body = error_body(
            code,
            "The request is not valid; see fields.",
            _fields(exc.detail),
        )
    else:
        detail = exc.detail
        message = (
            str(detail) if not isinstance(detail, dict | list) else exc.default_detail
        )
        body = error_body(code, str(message))
    return Response(body, status=exc.status_code, headers=headers)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """Turn any exception an API view raises into the error body (never None).

    Unexpected exceptions become a generic 500 after being logged server-side:
    their text may hold SQL, a DSN or a patient value, so none of it is sent.
    """
    if isinstance(exc, Refused):
        set_rollback()
        code = "forbidden" if exc.code in PERMISSION_CODES else exc.code
        return Response(error_body(code, str(exc)), status=refused_status(exc.code))
    if isinstance(exc, EngineError):
        # A connector or contract problem the caller can act on (the kinds
        # scrub secrets from these messages); not a server fault.
        set_rollback()
        transient = isinstance(exc, TransientError)
        return Response(
            error_body(
                "connector_unavailable" if transient else "connector_error", str(exc)
            ),
            status=status.HTTP_422_UNPROCESSABLE_ENTITY,
            headers={"Retry-After": "30"} if transient else None,
        )
    if isinstance(exc, IntegrityError):
        # e.g. a second table mapping for the same target table. The database's
        # text names constraints and values: not for the client.
        set_rollback()
        return Response(
            error_body("conflict", "That conflicts with an existing object."),
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        exc = exceptions.ValidationError(detail)
    if isinstance(exc, exceptions.APIException):
        set_rollback()
        return _drf_response(exc)
    set_rollback()
    request_id = current_request_id() or "-"
    view = context.get("view")
    log.exception(
        "API error in %s (request %s)", type(view).__name__ if view else "?", request_id
    )
    return Response(
        error_body(
            "server_error",
            f"Internal error. Quote request id {request_id} to the service desk.",
        ),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


class ApiPagination(PageNumberPagination):
    """Page-number pagination; ``page_size`` above ``max_page_size`` is a 400."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int:
        """Return the requested page size; raise ValidationError when out of range."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw in (None, ""):
            return self.page_size
        try:
            size = int(raw)
        except (TypeError, ValueError):
            raise exceptions.ValidationError(
                {"page_size": ["must be an integer"]}
            ) from None
        if not 1 <= size <= self.max_page_size:
            raise exceptions.ValidationError(
                {"page_size": [f"must be between 1 and {self.max_page_size}"]}
            )
        return size

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        """Return the query parameters, with the page size's real bounds."""
        params = super().get_schema_operation_parameters(view)
        for param in params:
            if param["name"] == self.page_size_query_param:
                param["schema"].update({"minimum": 1, "maximum": self.max_page_size})
            if param["name"] == self.page_query_param:
                param["schema"].update({"minimum": 1})
        return params


class ProjectScoped:
    """Mixin for a viewset whose objects belong to a project via ``project_field``.

    A plain mixin (use ``class V(ProjectScoped, GenericViewSet)``): this module
    is named in REST_FRAMEWORK settings, so it must not import DRF's generic
    views, whose class bodies read those very settings.

    Lists show only objects of projects where the user holds ``read_perm`` as an
    object permission; a detail of any other object is a 404. Unsafe actions
    do not check permissions here: they call a service, which checks the
    action's permission and raises ``Refused`` (audited) when it is missing.
    """

    project_field: ClassVar[str] = "project"
    read_perm: ClassVar[str] = VIEW
    lookup_value_regex = r"[0-9]+"
    queryset: Any = None
    request: Any
    kwargs: dict[str, Any]
    lookup_field: str = "pk"
    lookup_url_kwarg: str | None = None

    def base_queryset(self) -> models.QuerySet[Any]:
        """Return the unscoped queryset (subclasses override)."""
        assert self.queryset is not None, "set queryset or override base_queryset"
        return self.queryset.all()

    def get_queryset(self) -> models.QuerySet[Any]:
        """Return the base queryset limited to the user's projects."""
        return scoped(
            self.request.user, self.base_queryset(), self.read_perm, self.project_field
        )

    def get_object(self) -> Any:
        """Return the object of the URL, or raise Http404 (also for other projects)."""
        lookup = self.lookup_url_kwarg or self.lookup_field
        return access_object(
            self.request.user,
            self.base_queryset(),
            self.kwargs[lookup],
            self.read_perm,
            self.project_field,
        )


class ScopedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):  # type: ignore[type-arg]
    """A pk field that resolves only objects of projects the user can view.

    Another project's id therefore fails exactly like an unknown id (400,
    "object does not exist"): the answer does not reveal that it exists.
    """

    def __init__(self, *, project_field: str = "project", **kwargs: Any) -> None:
        self.project_field = project_field
        super().__init__(**kwargs)

    def get_queryset(self) -> models.QuerySet[Any]:
        """Return the queryset limited to the requesting user's projects."""
        request = self.context.get("request")
        user = getattr(request, "user", None)
        return scoped(user, super().get_queryset(), project_field=self.project_field)


# --- OpenAPI helpers -----------------------------------------------------------

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorDetail",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(required=False),
            },
        )
    },
)


def _err(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)


#: Error responses every endpoint may answer.
READ_ERRORS: dict[int, OpenApiResponse] = {
    400: _err("Bad query parameters"),
    401: _err("Not authenticated"),
    404: _err("Not found, or not visible to you"),
}
#: Error responses of unsafe actions that call a service.
WRITE_ERRORS: dict[int, OpenApiResponse] = {
    **READ_ERRORS,
    400: _err("Invalid request body"),
    403: _err("You lack the action's permission on the project"),
    409: _err("Illegal transition or four-eyes conflict"),
    415: _err("Unsupported media type"),
}
