import pytest
from pydantic import ValidationError

from services.shared.banks import BankBook
from services.shared.config import PolicySettings
from services.shared.schemas import BankConfigured, BankPolicy, encode, new_event
from tests.records import record


def configured(bank, **policy):
    event = new_event(BankConfigured(bank=bank, **policy), id=f"b-{bank}", source="t")
    return record(encode(event), key=bank.encode())


def test_topic_policies_override_env_policies_until_reset():
    book = BankBook(PolicySettings(banks={"kids": BankPolicy(pdq_threshold=20, auto_threshold=16)}))
    assert book.for_bank("kids").pdq_threshold == 20
    assert book.for_bank("other").pdq_threshold == 31
    book.apply(configured("kids", pdq_threshold=35, negative=True))
    assert book.for_bank("kids").pdq_threshold == 35 and book.for_bank("kids").negative
    assert book.widest_pdq_threshold() == 35
    book.apply(record(None, key=b"kids"))  # a tombstone resets to the env policy
    assert book.for_bank("kids").pdq_threshold == 20
    assert book.widest_pdq_threshold() == 31


def test_malformed_or_mismatched_bank_records_are_ignored():
    book = BankBook(PolicySettings())
    book.apply(record(b"not json", key=b"kids"))
    mismatched = configured("kids", enabled=False)._replace(key=b"other")
    book.apply(mismatched)
    assert book.configured() == []
    assert book.for_bank("other").enabled


@pytest.mark.parametrize(
    "build",
    [
        lambda: BankPolicy(pdq_threshold=20),  # the default auto_threshold, 24, is over it
        lambda: BankConfigured(bank="kids", pdq_threshold=31, auto_threshold=32),
        lambda: PolicySettings.model_validate({"banks": {"kids": {"pdq_threshold": 10}}}),
    ],
)
def test_an_auto_threshold_over_the_match_threshold_is_refused(build):
    with pytest.raises(ValidationError, match=r"auto_threshold \(\d+\) must be at most"):
        build()
    assert BankPolicy(pdq_threshold=20, auto_threshold=20).auto_threshold == 20
