"""The CRM import across its batches (issue 17, B11): a record met again in a later batch is updated, whether
the directory held records of the kind before (looked up per batch) or not (only this import's own)."""

from __future__ import annotations

import pytest

from tracking.actions.directory import BATCH_ROWS, check_import_records
from tracking.models import CrmRecord


def csv_text(rows: int, *, again_as: str) -> str:
    lines = ["name,email,active"] + [f"Contact {i},contact{i}@example.com,true" for i in range(rows)]
    lines.append(f"Contact 0,contact0@example.com,{again_as}")  # the first record again, in the last batch
    return "\n".join(lines) + "\n"


@pytest.mark.django_db
@pytest.mark.parametrize("directory_before", ["empty", "with a contact"])
def test_a_record_met_again_in_a_later_batch_is_updated_not_duplicated(directory_before):
    if directory_before != "empty":
        CrmRecord.objects.create(kind="contact", name="Someone", email1="someone@example.com")
    before = CrmRecord.objects.count()
    report = check_import_records("contact", csv_text(BATCH_ROWS, again_as="false"))
    assert (report.created, report.updated, report.rejected) == (BATCH_ROWS, 1, [])
    assert CrmRecord.objects.count() == before + BATCH_ROWS
    (first,) = CrmRecord.objects.filter(email1="contact0@example.com")
    assert first.active is False


@pytest.mark.django_db
def test_a_second_import_of_the_same_file_updates_every_record():
    text = csv_text(20, again_as="true")
    check_import_records("contact", text)
    report = check_import_records("contact", text)
    assert (report.created, report.updated) == (0, 21)
    assert CrmRecord.objects.count() == 20
