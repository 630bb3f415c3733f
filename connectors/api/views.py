"""API views of the connectors app: list and detail (secrets masked), health,
and the connection check.

Discovery and profiling into a schema snapshot is ``POST /api/v1/snapshots/``
(the migration app owns snapshots, and connectors sit below it).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from connectors.api.serializers import ConnectorHealthSerializer, ConnectorSerializer
from connectors.models import Connector
from connectors.services import connector_check
from governance import audit
from governance.access import user_has_project_perm
from pasportal.api import READ_ERRORS, WRITE_ERRORS, ProjectScoped


@extend_schema_view(
    list=extend_schema(
        summary="Connectors", responses={200: ConnectorSerializer, **READ_ERRORS}
    ),
    retrieve=extend_schema(
        summary="One connector", responses={200: ConnectorSerializer, **READ_ERRORS}
    ),
    check=extend_schema(
        summary="Test the connection now (needs manage_connectors)",
        request=None,
        responses={200: ConnectorHealthSerializer, **WRITE_ERRORS},
    ),
    health=extend_schema(
        summary="Health check history, newest first",
        responses={200: ConnectorHealthSerializer(many=True), **READ_ERRORS},
    ),
)
class ConnectorViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScoped, GenericViewSet
):
    """Registered sources and targets of the user's projects."""

    queryset = Connector.objects.select_related("created_by")
    serializer_class = ConnectorSerializer
    filterset_fields = ["project", "kind", "role", "health_status"]

    @action(detail=True, methods=["get"], filter_backends=[])
    def health(self, request: Request, pk: str) -> Response:
        """Return the connector's health checks (paginated)."""
        connector = self.get_object()
        page = self.paginate_queryset(connector.health.order_by("-checked_at"))
        return self.get_paginated_response(
            ConnectorHealthSerializer(page, many=True).data
        )

    @action(detail=True, methods=["post"])
    def check(self, request: Request, pk: str) -> Response:
        """Call ``connector_check`` and return the recorded health row."""
        connector = self.get_object()
        # connector_check records whatever it is asked to (the page enforces
        # the permission the same way): refuse, audited, before touching it.
        if not user_has_project_perm(
            request.user, connector.project_id, "manage_connectors"
        ):
            raise audit.refuse(
                actor=request.user,
                action="connectors.connector.check_refused",
                reason="you may not manage connectors on this project",
                code="forbidden",
                target=connector,
            )
        health = connector_check(actor=request.user, connector=connector)
        return Response(ConnectorHealthSerializer(health).data)
