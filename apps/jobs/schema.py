"""JSON Schema (draft 2020-12) for a job type's input serializer.

Job types declare their input as a DRF serializer; clients and the OpenAPI document see it as JSON
Schema. The mapping covers the field types a job input reasonably uses; an unknown field type is
published as "any value" rather than guessed.
"""

from __future__ import annotations

from typing import Any, cast

from rest_framework import fields, serializers
from rest_framework.fields import empty


def serializer_json_schema(serializer: serializers.Serializer) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, field in serializer.fields.items():
        if field.read_only:
            continue
        properties[name] = field_json_schema(field)
        if field.required:
            required.append(name)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


_STRING_FORMATS = {
    fields.EmailField: "email",
    fields.URLField: "uri",
    fields.UUIDField: "uuid",
    fields.DateTimeField: "date-time",
    fields.DateField: "date",
    fields.TimeField: "time",
    fields.IPAddressField: "ip",
}


def field_json_schema(field: fields.Field) -> dict[str, Any]:
    schema: dict[str, Any]
    if isinstance(field, serializers.ListSerializer):
        schema = {"type": "array", "items": field_json_schema(cast(fields.Field, field.child))}
    elif isinstance(field, serializers.Serializer):
        schema = serializer_json_schema(field)
    elif isinstance(field, fields.BooleanField):
        schema = {"type": "boolean"}
    elif isinstance(field, fields.IntegerField):
        schema = {"type": "integer"}
        _bounds(schema, field)
    elif isinstance(field, fields.FloatField | fields.DecimalField):
        schema = {"type": "number"}
        _bounds(schema, field)
    elif isinstance(field, fields.MultipleChoiceField):
        schema = {"type": "array", "items": {"enum": list(field.choices)}, "uniqueItems": True}
    elif isinstance(field, fields.ChoiceField):
        schema = {"enum": list(field.choices)}
    elif isinstance(field, fields.ListField):
        schema = {"type": "array", "items": field_json_schema(cast(fields.Field, field.child))}
        if field.min_length is not None:
            schema["minItems"] = field.min_length
        if field.max_length is not None:
            schema["maxItems"] = field.max_length
    elif isinstance(field, fields.DictField):
        schema = {
            "type": "object",
            "additionalProperties": field_json_schema(cast(fields.Field, field.child)),
        }
    elif isinstance(field, fields.JSONField):
        schema = {}
    elif isinstance(field, fields.CharField):
        schema = {"type": "string"}
        for cls, fmt in _STRING_FORMATS.items():
            if isinstance(field, cls):
                schema["format"] = fmt
        if field.max_length is not None:
            schema["maxLength"] = field.max_length
        min_length = field.min_length if field.min_length is not None else 0
        if not field.allow_blank:
            min_length = max(min_length, 1)
        if min_length:
            schema["minLength"] = min_length
    elif type(field) in _STRING_FORMATS:
        schema = {"type": "string", "format": _STRING_FORMATS[type(field)]}
    else:
        schema = {}
    if getattr(field, "allow_null", False) and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    if field.default is not empty and not callable(field.default):
        schema["default"] = field.default
    if field.help_text:
        schema["description"] = str(field.help_text)
    return schema


def _bounds(schema: dict[str, Any], field: Any) -> None:
    if getattr(field, "min_value", None) is not None:
        schema["minimum"] = field.min_value
    if getattr(field, "max_value", None) is not None:
        schema["maximum"] = field.max_value
