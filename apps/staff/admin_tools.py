"""The one place where the admin checks staff permissions on writes and records them.

Every model admin of Conveyor derives from ``StaffModelAdmin``:

- Each action declares the permission it needs (``@admin.action(permissions=["retry"])`` plus a
  ``has_retry_permission`` method, usually ``has_perm("jobs.retry_job")``). Django leaves an
  action the user may not run out of the dropdown, but a forged POST naming it is only answered
  with a "No action selected" redirect, or, when the user may run no action at all, with the
  list page: nothing says it was refused. Here any POST that names an action the user may not
  run answers 403 and is written to the audit log as denied, before anything else happens.
- Every write through the admin leaves one ``AdminAuditEntry``: actions (with the ids of the
  selection and the outcome the action noted with ``note_outcome``), additions and changes
  (through ``log_addition``/``log_change``, so inside the same transaction as the write, naming
  changed fields, never their values), deletions (after they happened), and refused POSTs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import ActionLocation
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse

from apps.staff.services import audit_record

_OUTCOME_ATTR = "_conveyor_audit_outcome"
# A select-across on a big table is counted up to this many rows for the audit entry.
_COUNT_CAP = 100_000
_DELETE_SELECTED = "delete_selected"


def note_outcome(request: HttpRequest, outcome: str) -> None:
    """Let an admin action say how it went ("3 retried, 1 refused") for its audit entry. Never
    pass a secret here: name keys by row id."""
    setattr(request, _OUTCOME_ATTR, outcome)


def _take_outcome(request: HttpRequest, default: str) -> str:
    outcome = getattr(request, _OUTCOME_ATTR, None)
    if outcome is not None:
        delattr(request, _OUTCOME_ATTR)
    return outcome or default


def _selection(queryset: QuerySet[Any]) -> tuple[list[Any], int]:
    """The first ids of an action's selection and its (bounded) size, without counting a big
    table in full."""
    from apps.staff.models import AdminAuditEntry

    limit = AdminAuditEntry.MAX_OBJECT_IDS
    ids = list(queryset.values_list("pk", flat=True)[: limit + 1])
    if len(ids) <= limit:
        return ids, len(ids)
    return ids[:limit], queryset.order_by()[:_COUNT_CAP].count()


def _changed_fields(message: Any) -> str:
    """The field names in a change message of the admin (a list, or its JSON)."""
    if isinstance(message, str):
        try:
            message = json.loads(message)
        except ValueError:
            return ""
    names: list[str] = []
    for part in message if isinstance(message, list) else []:
        if isinstance(part, dict):
            names.extend(str(name) for name in part.get("changed", {}).get("fields", []))
    return ", ".join(names)


class StaffModelAdmin(admin.ModelAdmin):
    """A model admin whose writes are permission-checked (403 when refused) and audited."""

    def _model_label(self) -> str:
        return self.opts.label_lower

    def _audit(self, request: HttpRequest, action: str, **fields: Any) -> None:
        audit_record(user=request.user, action=action, model=self._model_label(), **fields)

    # --- Actions ----------------------------------------------------------------------------
    def apply_each(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        action: Callable[[Any], Any],
        verb: str,
        *,
        label: Callable[[Any], str] = lambda obj: str(obj.pk),
    ) -> None:
        """Run ``action`` (a service) on each selected object, at most 1 000: count those it
        took, show why it refused the others (a ConveyorError's message), and note the outcome
        for the audit entry."""
        from apps.core.errors import ConveyorError

        done, refused = 0, []
        for obj in queryset[:1000]:
            try:
                action(obj)
                done += 1
            except ConveyorError as exc:
                refused.append(f"{label(obj)}: {exc.message}")
        noun = self.opts.verbose_name
        if done:
            self.message_user(request, f"{done} {noun}(s) {verb}.", messages.SUCCESS)
        for line in refused[:20]:
            self.message_user(request, line, messages.WARNING)
        note_outcome(request, f"{done} {verb}, {len(refused)} refused")

    def get_actions(
        self, request: HttpRequest, action_location: ActionLocation = ActionLocation.CHANGE_LIST
    ) -> dict[str, Any]:
        actions = super().get_actions(request, action_location=action_location)
        return {
            name: dataclasses.replace(action, func=self._audited_action(action.func, name))
            for name, action in actions.items()
            if action is not None
        }

    def _audited_action(self, func: Callable[..., Any], name: str) -> Callable[..., Any]:
        if name == _DELETE_SELECTED:
            return self._audited_bulk_delete(func)

        @functools.wraps(func)
        def run(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
            ids, count = _selection(queryset)
            try:
                response = func(modeladmin, request, queryset)
            except Exception as exc:
                self._audit(
                    request,
                    name,
                    object_ids=ids,
                    object_count=count,
                    outcome=f"failed: {type(exc).__name__}",
                )
                raise
            self._audit(
                request,
                name,
                object_ids=ids,
                object_count=count,
                outcome=_take_outcome(request, "done"),
            )
            return response

        return run

    def _audited_bulk_delete(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Django's bulk delete first answers with a confirmation page (nothing to audit) and
        audits its deletion in ``delete_queryset``; a refusal noted by an admin's own version of
        the action (``note_outcome``) is audited here."""

        @functools.wraps(func)
        def run(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
            response = func(modeladmin, request, queryset)
            outcome = _take_outcome(request, "")
            if outcome:
                ids, count = _selection(queryset)
                self._audit(
                    request, _DELETE_SELECTED, object_ids=ids, object_count=count, outcome=outcome
                )
            return response

        return run

    def _refuse_forbidden_action(self, request: HttpRequest, location: ActionLocation) -> None:
        """403 (and a denied audit entry) when the POST names an action the user may not run."""
        field = "action" if location == ActionLocation.CHANGE_LIST else f"{location.value}-action"
        posted = [name for name in request.POST.getlist(field) if name]
        if not posted:
            return
        allowed = self.get_actions(request, action_location=location)
        refused = [name for name in posted if name not in allowed]
        if refused:
            selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
            self._audit(
                request,
                refused[0],
                object_ids=selected,
                outcome="refused: the user may not run this action",
                denied=True,
            )
            raise PermissionDenied

    # --- Views: refused POSTs are audited ----------------------------------------------------
    def _denied(self, request: HttpRequest, action: str, object_id: Any = None) -> None:
        self._audit(
            request,
            action,
            object_ids=[object_id] if object_id is not None else [],
            outcome="refused: permission denied",
            denied=True,
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "POST":
            self._refuse_forbidden_action(request, ActionLocation.CHANGE_LIST)
            try:
                return super().changelist_view(request, extra_context)
            except PermissionDenied:
                self._denied(request, request.POST.get("action") or "change")
                raise
        return super().changelist_view(request, extra_context)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        if request.method == "POST":
            if object_id is not None:
                self._refuse_forbidden_action(request, ActionLocation.CHANGE_FORM)
            try:
                return super().changeform_view(request, object_id, form_url, extra_context)
            except PermissionDenied:
                self._denied(request, "change" if object_id else "add", object_id)
                raise
        return super().changeform_view(request, object_id, form_url, extra_context)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> Any:
        if request.method == "POST":
            try:
                return super().delete_view(request, object_id, extra_context)
            except PermissionDenied:
                self._denied(request, "delete", object_id)
                raise
        return super().delete_view(request, object_id, extra_context)

    # --- Writes ------------------------------------------------------------------------------
    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        entry = super().log_addition(request, obj, message)
        self._audit(request, "add", object_ids=[obj.pk], outcome=_take_outcome(request, "added"))
        return entry

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        entry = super().log_change(request, obj, message)
        fields = _changed_fields(message)
        default = f"changed: {fields}" if fields else "saved without changes"
        self._audit(request, "change", object_ids=[obj.pk], outcome=_take_outcome(request, default))
        return entry

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        pk = obj.pk
        super().delete_model(request, obj)
        self._audit(request, "delete", object_ids=[pk], outcome="deleted")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        ids = [obj.pk for obj in queryset]
        super().delete_queryset(request, queryset)
        self._audit(request, _DELETE_SELECTED, object_ids=ids, outcome=f"{len(ids)} deleted")
