from tests.conftest import CORPORA


def test_it_ingests_an_enron_inbox(alice, cmd):
    result = cmd(
        "ingest",
        "--mailbox",
        "alice@contoso.com",
        "--folder",
        "inbox",
        str(CORPORA / "enron-mbox/allen-p/inbox.mbox"),
        "--json",
    )
    rows = result.json_lines()
    assert len(rows) == 66
    assert {r["outcome"] for r in rows} == {"not_tracked"}
