from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.subjects import Identifier, mask, mask_email, mask_name, mask_phone
from services.vocabulary import IdentifierKind as K


def test_examples() -> None:
    assert mask_email("jane.doe@example.com") == "j***@e******.com"
    assert mask_email("a@b.co") == "a***@b***.co"
    assert mask_phone("+4670123456") == "+46******56"
    assert mask_name("Jane Doe") == "J*** D**"
    assert mask(Identifier(K.VENDOR_USER_ID, "1000032", "zendesk")) == "****032"
    assert mask(Identifier(K.ADDRESS, "1 Main St")) == "*****"
    assert mask(Identifier(K.TEXT, "order 4711")) == "*****"


@given(st.emails())
def test_an_email_never_survives_masking(email: str) -> None:
    # Of the local part and of the domain's label only the first character shows; the rest are
    # stars (checked by position: a '*' in the address itself is not a leak of it).
    local, _, domain = email.partition("@")
    label, _, tld = domain.rpartition(".")
    masked = mask_email(email)
    assert masked != email
    masked_local, _, masked_domain = masked.partition("@")
    assert masked_local == local[:1] + "***"
    assert masked_domain.endswith("." + tld)
    masked_label = masked_domain[:-len(tld) - 1]
    assert masked_label[:1] == label[:1] and set(masked_label[1:]) == {"*"}


@given(st.text(alphabet="0123456789", min_size=6, max_size=15))
def test_a_phone_shows_at_most_five_digits(number: str) -> None:
    masked = mask_phone("+" + number)
    assert sum(c.isdigit() for c in masked) <= 4
    assert len(masked) == len(number) + 1
