"""Copy me: replay recorded checkout traffic through a real fraudstream worker, check decisions."""

from pathlib import Path

RECORDING = Path(__file__).parent / "recordings" / "checkout.jsonl"


def test_an_unusual_jeweller_purchase_is_held(fraudstream_stack):
    sent = fraudstream_stack.replay(RECORDING)  # into this test's own, fresh topics
    fraudstream_stack.start_worker()  # stopped after the test, its exit code checked
    decisions = fraudstream_stack.scores(expect=sent, timeout=120).decisions()
    assert decisions["ex-4"] in {"review", "decline"}  # 4,800 EUR on a coffee-and-groceries card
    assert decisions["ex-1"] == decisions["ex-3"] == "approve"
