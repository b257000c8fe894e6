from django.db import migrations
from django.utils.dateparse import parse_datetime

# Columns tracking.bulk.insert_rows wrote: on SQLite it handed aware datetimes to the driver, which stored
# them with their offset ("… 09:00:00+00:00", "… 02:00:00-07:00") where Django writes naive UTC text.
# SQLite compares text, so the timeline's `timeline_at = …` and `<= …` missed those rows
# (tracking.bulk._sqlite_rows).
WRITTEN_BY_INSERT_ROWS = (("EmailParty", "timeline_at"), ("CrmRecord", "created_at"))
CHUNK = 5000


def naive_utc_text(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "sqlite":
        return
    adapt = connection.ops.adapt_datetimefield_value
    for model_name, column in WRITTEN_BY_INSERT_ROWS:
        table = connection.ops.quote_name(apps.get_model("tracking", model_name)._meta.db_table)
        name = connection.ops.quote_name(column)
        with connection.cursor() as cursor:
            cursor.execute(
                # as text: Django's SQLite connection would hand a datetime column over parsed
                f"SELECT rowid, CAST({name} AS TEXT) FROM {table} WHERE {name} LIKE %s OR {name} LIKE %s",
                ["%+__:__", "%-__:__"],
            )
            while rows := cursor.fetchmany(CHUNK):
                fixed = []
                for rowid, text in rows:
                    value = parse_datetime(text)
                    if value is not None:
                        fixed.append((adapt(value), rowid))
                with connection.cursor() as writer:
                    writer.executemany(f"UPDATE {table} SET {name} = %s WHERE rowid = %s", fixed)


class Migration(migrations.Migration):
    dependencies = [("tracking", "0019_tracked_email_search")]

    operations = [migrations.RunPython(naive_utc_text, migrations.RunPython.noop, elidable=True)]
