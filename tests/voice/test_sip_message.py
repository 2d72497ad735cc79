"""SIP messages, SDP offer/answer and digest auth, checked against the RFCs' own examples."""

from __future__ import annotations

import pytest

from runwire.voice.sip import digest, sdp
from runwire.voice.sip.message import (
    MalformedMessage,
    SipRequest,
    SipResponse,
    SipUri,
    param,
    parse,
    response_to,
    uri_of,
)

# RFC 4475 3.1.1.1-style: compact forms, folded lines, two Vias in one header, odd spacing.
TORTURE = (
    b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n"
    b"TO :\r\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n"
    b'f: "J Rosenberg \\\\\\"" <sip:jdrosen@example.com>\r\n'
    b"  ;\r\n  tag = 98asjd8\r\n"
    b"MaX-fOrWaRdS: 0068\r\n"
    b"Call-ID: wsinv.ndaksdj@192.0.2.1\r\n"
    b"Content-Length   : 150\r\n"
    b"cseq: 0009\r\n  INVITE\r\n"
    b"Via  : SIP  /   2.0\r\n  /UDP\r\n    192.0.2.2;branch=390skdjuw\r\n"
    b"v: SIP/2.0/UDP 192.0.2.3:5060;branch=z9hG4bK1, SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK2\r\n"
    b"s :\r\n"
    b"m:<sip:user@192.0.2.5:5060>\r\n"
    b"\r\n" + b"v=0\r\n" * 30
)


def test_a_torture_request_parses_with_compact_forms_folding_and_split_vias() -> None:
    message = parse(TORTURE)
    assert isinstance(message, SipRequest)
    assert (message.method, message.uri) == (
        "INVITE",
        "sip:vivekg@chair-dnrc.example.com;unknownparam",
    )
    assert message.cseq == (9, "INVITE")
    assert message.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert len(message.headers_named("Via")) == 3
    assert message.to_tag == "1918181833n"
    assert message.from_tag == "98asjd8"
    assert message.headers_named("Via")[1] == "SIP/2.0/UDP 192.0.2.3:5060;branch=z9hG4bK1"
    assert uri_of(message.need("Contact")) == "sip:user@192.0.2.5:5060"
    assert message.header("Max-Forwards") == "0068"
    assert len(message.body) == 150


def test_a_built_request_round_trips_and_counts_its_body() -> None:
    request = SipRequest(
        method="INVITE",
        uri="sip:menu@127.0.0.1:5070",
        headers=(
            ("Via", "SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKabc;rport"),
            ("From", '"Runwire" <sip:runwire@127.0.0.1>;tag=f1'),
            ("To", "<sip:menu@127.0.0.1:5070>"),
            ("Call-ID", "c1@127.0.0.1"),
            ("CSeq", "1 INVITE"),
            ("Content-Length", "999"),
        ),
        body=b"v=0\r\n",
    )
    again = parse(request.encode())
    assert again == request.with_headers(content_length="5")
    assert again.branch == "z9hG4bKabc"
    assert again.from_tag == "f1"
    assert again.to_tag is None
    response = response_to(again, 180, to_tag="t9")
    assert response.encode().startswith(b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5080")
    parsed = parse(response.encode())
    assert isinstance(parsed, SipResponse)
    assert (parsed.status, parsed.to_tag, parsed.cseq) == (180, "t9", (1, "INVITE"))


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"\xff\xfe\x00garbage",
        b"HELLO WORLD\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\n\r\n",  # no From …
        b"SIP/2.0 200 OK\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: one INVITE\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        b"Content-Length: 50\r\n\r\nshort",
        b"OPTIONS sip:a@b SIP/2.0\r\nno colon here\r\n\r\n",
    ],
)
def test_malformed_datagrams_raise_malformed_message(datagram: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse(datagram)


def test_uris_and_parameters() -> None:
    assert SipUri.parse("sip:alice@10.0.0.5:5070;transport=udp") == SipUri(
        "alice", "10.0.0.5", 5070, {"transport": "udp"}
    )
    assert SipUri.parse("sip:pbx.example.com").address == ("pbx.example.com", 5060)
    assert param('"A;b" <sip:a@b;lr>;tag=xyz;x', "tag") == "xyz"
    assert param("<sip:a@b;tag=inside>", "tag") is None
    with pytest.raises(MalformedMessage):
        SipUri.parse("tel:+15551234")


ASTERISK_OFFER = b"""v=0\r
o=- 1 1 IN IP4 10.0.0.1\r
s=Asterisk\r
c=IN IP4 10.0.0.1\r
t=0 0\r
m=audio 17000 RTP/AVP 8 0 3 101\r
c=IN IP4 10.0.0.9\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:3 GSM/8000\r
a=rtpmap:101 telephone-event/8000\r
a=fmtp:101 0-16\r
a=ptime:20\r
m=video 17002 RTP/AVP 96\r
"""


def test_sdp_picks_our_preferred_codec_the_peer_offers_and_its_events() -> None:
    offer = sdp.parse(ASTERISK_OFFER)
    assert (offer.host, offer.port, offer.payload_types) == ("10.0.0.9", 17000, (8, 0, 3, 101))
    assert sdp.choose(offer) == sdp.Media("10.0.0.9", 17000, 0, "PCMU", 101)
    assert sdp.choose(offer, ("PCMA",)) == sdp.Media("10.0.0.9", 17000, 8, "PCMA", 101)
    with pytest.raises(sdp.SdpError):
        sdp.choose(sdp.parse(b"c=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 3\r\n"))


def test_our_offer_lists_both_codecs_and_telephone_events() -> None:
    offer = sdp.describe("192.0.2.7", 40000, ("PCMA", "PCMU"), session_id=7)
    text = offer.decode()
    assert "m=audio 40000 RTP/AVP 8 0 101\r\n" in text
    assert "a=fmtp:101 0-16\r\n" in text
    assert "a=ptime:20\r\n" in text
    assert sdp.answer_choice(sdp.parse(offer), ("PCMU", "PCMA")).codec == "PCMA"


def test_digest_matches_rfc_2617s_worked_example() -> None:
    challenge = digest.parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    header = digest.authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        cnonce="0a4f113b",
    )
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert "nc=00000001" in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header
    nonces = {challenge.nonce}
    assert digest.verify(
        header, method="GET", password_of={"Mufasa": "Circle Of Life"}, nonces=nonces
    )
    assert not digest.verify(header, method="GET", password_of={"Mufasa": "x"}, nonces=nonces)
    assert not digest.verify(
        header, method="GET", password_of={"Mufasa": "Circle Of Life"}, nonces=set()
    )
