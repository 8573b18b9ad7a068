# The studio document's tables (StudioGeneration, GenerationDefaults) now belong to its
# own app (label "studio"), which keeps them under their names: only Django's picture of
# the models changes here, not the database.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('generation', '0002_studio'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(
                    name='GenerationDefaults',
                ),
                migrations.DeleteModel(
                    name='StudioGeneration',
                ),
            ],
            database_operations=[],
        ),
    ]
