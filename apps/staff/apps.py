from django.apps import AppConfig


class StaffConfig(AppConfig):
    name = "apps.staff"
    label = "staff"
    verbose_name = "Staff roles and audit log"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from apps.staff.roles import sync_roles_after_migrate

        # After auth's own handler has created the permissions of every app before this one.
        post_migrate.connect(sync_roles_after_migrate, sender=self, dispatch_uid="staff-roles")
