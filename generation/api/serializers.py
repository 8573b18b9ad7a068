from __future__ import annotations

from rest_framework import serializers

from backserv_site.serializers import StrictSerializer
from generation.models import Upload


class UploadCreateSerializer(StrictSerializer):
    file = serializers.FileField(allow_empty_file=False)


class UploadSerializer(serializers.ModelSerializer):
    # What to put in an image param to use this upload.
    reference = serializers.SerializerMethodField()

    class Meta:
        model = Upload
        fields = ["id", "reference", "content_type", "size", "width", "height", "created_at"]
        read_only_fields = fields

    def get_reference(self, upload: Upload) -> str:
        return f"upload:{upload.pk}"
