"""Webhook rules without I/O: which addresses are refused, the signature, the retry delays."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from runwire.domain.models import ExecutionStatus
from runwire.domain.webhooks import WebhookEvent, address_refusal, signature, url_errors
from runwire.webhook_delivery import MAX_RETRY_DELAY, retry_delay


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "169.254.1.1", "fe80::1", "fd00:ec2::254", "0.0.0.0", "::", "224.0.0.1"],
)
def test_link_local_metadata_unspecified_and_multicast_are_refused_even_when_private_is_allowed(
    address: str,
) -> None:
    assert address_refusal(address, allow_private=True) is not None


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fd12::1"],
)
def test_loopback_and_private_addresses_need_the_opt_in(address: str) -> None:
    refusal = address_refusal(address, allow_private=False)
    assert refusal is not None
    assert "RUNWIRE_WEBHOOK_ALLOW_PRIVATE" in refusal
    assert address_refusal(address, allow_private=True) is None


def test_public_addresses_and_mapped_ones_are_judged_by_the_address_they_carry() -> None:
    assert address_refusal("93.184.215.14", allow_private=False) is None
    assert address_refusal("2606:4700::1111", allow_private=False) is None
    assert address_refusal("::ffff:169.254.169.254", allow_private=True) is not None
    assert address_refusal("::ffff:127.0.0.1", allow_private=False) is not None


def test_url_form() -> None:
    assert url_errors("https://hooks.example.com/runwire?x=1") == []
    assert [e.path for e in url_errors("gopher://example.com/")] == ["url"]
    assert url_errors("http://example.com:99999/")[0].message.startswith("not a URL")
    assert "credentials" in url_errors("https://a:b@example.com/")[0].message
    assert "spaces" in url_errors("https://example.com/a b")[0].message


def test_the_signature_is_the_documented_hmac_of_timestamp_dot_body() -> None:
    body = b'{"id":"x"}'
    expected = hmac.new(b"whsec_k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("whsec_k", 1700000000, body) == f"v1={expected}"


def test_retry_delays_double_with_jitter_up_to_the_cap() -> None:
    for attempt, base in ((1, 30.0), (2, 60.0), (3, 120.0)):
        assert 0.8 * base <= retry_delay(attempt, 30.0) <= 1.2 * base
    cap = MAX_RETRY_DELAY.total_seconds()
    assert 0.8 * cap <= retry_delay(20, 30.0) <= 1.2 * cap


def test_each_end_is_its_own_event_and_other_statuses_are_none() -> None:
    assert WebhookEvent.of_end(ExecutionStatus.FAILED) == WebhookEvent.EXECUTION_FAILED
    assert WebhookEvent.of_end(ExecutionStatus.TIMED_OUT) == WebhookEvent.EXECUTION_TIMED_OUT
    assert WebhookEvent.of_end(ExecutionStatus.PAUSED) is None
    assert WebhookEvent.EXECUTION_TIMED_OUT.wire_name == "execution.timed_out"
