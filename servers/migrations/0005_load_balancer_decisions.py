from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("servers", "0004_load_balancer_verbose_name"),
    ]

    operations = [
        migrations.AddField(
            model_name="loadbalancer",
            name="decisions",
            field=models.BigIntegerField(default=0, editable=False),
        ),
    ]
