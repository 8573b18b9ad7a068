from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backserv_site.schema import errors
from generation import services
from generation.api.schema import UPLOAD_EXAMPLES, UPLOAD_LIST_EXAMPLES
from generation.api.serializers import UploadCreateSerializer, UploadSerializer
from generation.models import Upload
from tasks.api.lookup import one_or_not_found


def owned_uploads(request: Request) -> QuerySet[Upload]:
    return Upload.objects.filter(owner=request.user)


def owned_upload(request: Request, upload_id: str) -> Upload:
    return one_or_not_found(owned_uploads(request), upload_id, "Upload")


@extend_schema_view(
    get=extend_schema(
        summary="List your uploads",
        responses={200: UploadSerializer(many=True), **errors(400, 401)},
        examples=UPLOAD_LIST_EXAMPLES,
    )
)
class UploadListCreateView(generics.ListAPIView):
    serializer_class = UploadSerializer
    parser_classes = [MultiPartParser, FormParser]
    queryset = Upload.objects.none()  # the schema's model; requests use get_queryset()

    def get_queryset(self) -> QuerySet[Upload]:
        return owned_uploads(self.request)

    @extend_schema(
        summary="Upload an input image",
        description="Multipart with a `file` field. Use the returned id as an image param (`upload:<id>`).",
        request={"multipart/form-data": UploadCreateSerializer},
        responses={201: UploadSerializer, **errors(400, 401)},
        examples=UPLOAD_EXAMPLES,
    )
    def post(self, request: Request) -> Response:
        serializer = UploadCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = services.upload_create(owner=request.user, file=serializer.validated_data["file"])
        return Response(UploadSerializer(upload).data, status=status.HTTP_201_CREATED)


class UploadDetailView(APIView):
    serializer_class = UploadSerializer

    @extend_schema(
        summary="Get an upload", responses={200: UploadSerializer, **errors(401, 404)}, examples=UPLOAD_EXAMPLES
    )
    def get(self, request: Request, upload_id: str) -> Response:
        return Response(UploadSerializer(owned_upload(request, upload_id)).data)

    @extend_schema(
        summary="Delete an upload", responses={204: OpenApiResponse(description="Deleted."), **errors(401, 404)}
    )
    def delete(self, request: Request, upload_id: str) -> Response:
        services.upload_delete(upload=owned_upload(request, upload_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
