"""A count of each user's unfinished jobs, kept by triggers on Postgres (see
tasks.models.UnfinishedCount), filled from the jobs as they stand.

Statement-level triggers with transition tables: a statement that changes many jobs
(a batch finishing, a sweep) updates each owner's count once; a new user starts at 0. They lock the owners'
counts in owner order, so two statements changing jobs of the same owners cannot
deadlock on them. An UPDATE that leaves every job unfinished or finished as it was
(a claim, a start, progress) writes nothing. A count only decreases where its row
exists, so deleting a user, which deletes its row and its jobs in either order, leaves
none behind."""

from django.conf import settings
from django.db import migrations, models

UNFINISHED = "('PENDING', 'RECEIVED', 'STARTED')"

# Each owner's change of unfinished jobs, from the statement's transition tables.
_DELTAS = {
    "INSERT": f"SELECT owner_id, count(*) AS delta FROM new_rows WHERE state IN {UNFINISHED} GROUP BY owner_id",
    "DELETE": f"SELECT owner_id, -count(*) AS delta FROM old_rows WHERE state IN {UNFINISHED} GROUP BY owner_id",
    "UPDATE": (
        "SELECT owner_id, sum(delta) AS delta FROM ("
        f"SELECT owner_id, 1 AS delta FROM new_rows WHERE state IN {UNFINISHED} "
        f"UNION ALL SELECT owner_id, -1 FROM old_rows WHERE state IN {UNFINISHED}"
        ") changed GROUP BY owner_id HAVING sum(delta) <> 0"
    ),
}

_FUNCTION = """
CREATE FUNCTION tasks_unfinished_count_{op}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed record;
BEGIN
    -- In owner order, each count locked as it is written.
    FOR changed IN {deltas} ORDER BY owner_id LOOP
        IF changed.delta > 0 THEN
            INSERT INTO tasks_unfinishedcount AS counted (owner_id, unfinished)
                VALUES (changed.owner_id, changed.delta)
                ON CONFLICT (owner_id) DO UPDATE SET unfinished = counted.unfinished + EXCLUDED.unfinished;
        ELSE
            UPDATE tasks_unfinishedcount SET unfinished = unfinished + changed.delta
                WHERE owner_id = changed.owner_id;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_unfinished_count_{op} AFTER {OP} ON tasks_task
    REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION tasks_unfinished_count_{op}();
"""

_TABLES = {"INSERT": "NEW TABLE AS new_rows", "DELETE": "OLD TABLE AS old_rows", "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows"}


def _create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # No job changes between the fill and the triggers.
    schema_editor.execute("LOCK TABLE tasks_task IN SHARE ROW EXCLUSIVE MODE")
    users = schema_editor.quote_name(apps.get_model(settings.AUTH_USER_MODEL)._meta.db_table)
    schema_editor.execute(f"LOCK TABLE {users} IN SHARE ROW EXCLUSIVE MODE")
    schema_editor.execute(
        "INSERT INTO tasks_unfinishedcount (owner_id, unfinished) SELECT users.id, "
        f"(SELECT count(*) FROM tasks_task WHERE owner_id = users.id AND state IN {UNFINISHED}) FROM {users} users"
    )
    for op, deltas in _DELTAS.items():
        schema_editor.execute(_FUNCTION.format(op=op.lower(), OP=op, deltas=deltas, tables=_TABLES[op]))
    # Every user has a count from the start: a submit never has to make one.
    schema_editor.execute(_USER_FUNCTION.format(users=users))


_USER_FUNCTION = """
CREATE FUNCTION tasks_unfinished_count_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tasks_unfinishedcount (owner_id, unfinished) SELECT id, 0 FROM new_rows ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_unfinished_count_user AFTER INSERT ON {users}
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tasks_unfinished_count_user();
"""


def _drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    users = schema_editor.quote_name(apps.get_model(settings.AUTH_USER_MODEL)._meta.db_table)
    schema_editor.execute(f"DROP TRIGGER tasks_unfinished_count_user ON {users}")
    schema_editor.execute("DROP FUNCTION tasks_unfinished_count_user()")
    for op in _DELTAS:
        schema_editor.execute(f"DROP TRIGGER tasks_unfinished_count_{op.lower()} ON tasks_task")
        schema_editor.execute(f"DROP FUNCTION tasks_unfinished_count_{op.lower()}()")


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("tasks", "0012_usage_and_result_retention"),
    ]

    operations = [
        migrations.CreateModel(
            name="UnfinishedCount",
            fields=[
                (
                    "owner",
                    models.OneToOneField(
                        on_delete=models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                ("unfinished", models.IntegerField(default=0)),
            ],
        ),
        migrations.RunPython(_create, _drop),
    ]
