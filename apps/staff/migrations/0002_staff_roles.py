# The three staff roles of the admin (docs/operations.md, "Staff roles"), each a group with
# exactly the permissions it needs. Permissions of a model are normally created after migrate
# (post_migrate), so on a fresh database they do not exist yet here: their rows, and the
# content types they hang on, are created here if missing (post_migrate then finds them).

from django.db import migrations

VIEW = [
    ("jobs", "job", "view_job", "Can view job"),
    ("jobs", "jobevent", "view_jobevent", "Can view job event"),
    ("webhooks", "webhookdelivery", "view_webhookdelivery", "Can view webhook delivery"),
    ("webhooks", "webhookattempt", "view_webhookattempt", "Can view webhook attempt"),
    ("clients", "apiclient", "view_apiclient", "Can view api client"),
    ("clients", "apikey", "view_apikey", "Can view API key"),
    ("staff", "adminauditentry", "view_adminauditentry", "Can view admin audit entry"),
]
OPERATE = [
    ("jobs", "job", "cancel_job", "Can cancel jobs"),
    ("jobs", "job", "retry_job", "Can retry jobs"),
    ("webhooks", "webhookdelivery", "redeliver_webhookdelivery", "Can redeliver webhooks"),
]
ADMINISTER = [
    ("clients", "apiclient", "add_apiclient", "Can add api client"),
    ("clients", "apiclient", "change_apiclient", "Can change api client"),
    ("clients", "apiclient", "rotate_webhook_secret", "Can rotate a client's webhook secret"),
    ("clients", "apikey", "add_apikey", "Can add API key"),
    ("clients", "apikey", "revoke_apikey", "Can revoke API keys"),
]
ROLES = {
    "Conveyor viewers": VIEW,
    "Conveyor operators": VIEW + OPERATE,
    "Conveyor admins": VIEW + OPERATE + ADMINISTER,
}


def create_roles(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    db = schema_editor.connection.alias
    for name, wanted in ROLES.items():
        permissions = []
        for app_label, model, codename, label in wanted:
            content_type, _ = ContentType.objects.using(db).get_or_create(
                app_label=app_label, model=model
            )
            permission, _ = Permission.objects.using(db).get_or_create(
                content_type=content_type, codename=codename, defaults={"name": label}
            )
            permissions.append(permission)
        group, _ = Group.objects.using(db).get_or_create(name=name)
        group.permissions.set(permissions)


def drop_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=list(ROLES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("staff", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("clients", "0002_staff_permissions"),
        ("jobs", "0004_staff_permissions"),
        ("webhooks", "0003_staff_permissions"),
    ]

    operations = [migrations.RunPython(create_roles, drop_roles)]
