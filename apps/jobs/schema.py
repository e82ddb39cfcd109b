"""JSON Schema (draft 2020-12) for a job type's input serializer.

Job types declare their input as a DRF serializer; clients and the OpenAPI document see it as JSON
Schema. The mapping covers the field types a job input reasonably uses; an unknown field type is
published as "any value" rather than guessed.

DRF's fields coerce what JSON Schema refuses (a number for a CharField, "12" for an IntegerField,
"yes" for a BooleanField, 1 for the choice "1"), so ``type_problems`` holds an input to the JSON
types the published schema states before the serializer sees it: a client or fuzzer that reads the
schema and the server agree on what is an input.
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


def _is_type(value: Any, name: str) -> bool:
    match name:
        case "string":
            return isinstance(value, str)
        case "integer":
            return _is_number(value) and (isinstance(value, int) or value.is_integer())
        case "number":
            return _is_number(value)
        case "boolean":
            return isinstance(value, bool)
        case "array":
            return isinstance(value, list)
        case "object":
            return isinstance(value, dict)
        case "null":
            return value is None
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(value: Any, choice: Any) -> bool:
    # JSON equality: true is not 1, "1" is not 1.
    return value == choice and isinstance(value, bool) == isinstance(choice, bool)


def type_problems(schema: dict[str, Any], value: Any) -> Any:
    """Where ``value`` has a JSON type (or an enum member) other than ``schema`` states, in DRF's
    nested error shape ({"field": ["..."]}, lists by index), or None. Bounds, lengths and required
    fields are left to the serializer, whose checks mean the same as the schema's."""
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_is_type(value, name) for name in names):
            return [f"Must be of type {' or '.join(names)}."]
    if "enum" in schema and not any(_same(value, choice) for choice in schema["enum"]):
        return [f"Must be one of {', '.join(map(repr, schema['enum']))}."]
    problems: dict[Any, Any] = {}
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            item_schema = properties.get(key, extra if isinstance(extra, dict) else None)
            if item_schema is not None and (problem := type_problems(item_schema, item)):
                problems[key] = problem
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            if problem := type_problems(schema["items"], item):
                problems[index] = problem
    return problems or None
