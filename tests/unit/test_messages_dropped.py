"""Messages that name no upload are dropped, never retried; a sequencer S3 could not have written
is refused; an object encrypted beyond the function's reach is a FAILED item, not an alarm."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from classify_ops import messages
from classify_ops.errors import OpsError
from classify_upload.classify import triage_storage_error
from classify_upload.errors import ConfigurationFailure, MessageDropped, PermanentFailure
from classify_upload.events import (
    SEQUENCER_WIDTH,
    message_objects,
    pad_sequencer,
    reprocess_request,
    uploaded_objects,
    valid_sequencer,
)


def s3_record(**object_fields: Any) -> dict[str, Any]:
    obj = {"key": "uploads/dog.jpg", "size": 10, "eTag": "e", "sequencer": "0055AED6DCD90281E5"}
    obj.update(object_fields)
    return {
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-25T03:00:00.000Z",
        "s3": {"bucket": {"name": "b"}, "object": {k: v for k, v in obj.items() if v is not None}},
    }


# A table item as the ops side reads it; a reprocess request carries the same fields.
ITEM = {
    "bucket": "b",
    "key": "uploads/dog.jpg",
    "version_id": "v1",
    "sequencer": pad_sequencer("0055AED6DCD90281E5"),
    "etag": "e",
    "size": 10,
    "event_time": "2026-11-25T03:00:00.000Z",
}


def reprocess(**fields: Any) -> dict[str, Any]:
    request = {"run_id": "rp-1", **ITEM, **fields}
    return {"reprocess": {k: v for k, v in request.items() if v is not ...}}


# -- sequencers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sequencer",
    ["0055AED6DCD90281E5", "0055aed6dcd90281e5", "0A", "F" * SEQUENCER_WIDTH],
    ids=["upper", "lower", "short", "full-width"],
)
def test_the_hex_s3_writes_is_accepted_and_padded(sequencer):
    assert valid_sequencer(sequencer) == pad_sequencer(sequencer)
    assert len(valid_sequencer(sequencer)) == SEQUENCER_WIDTH


@pytest.mark.parametrize(
    "sequencer",
    [
        "ZZZZZZZZ",  # sorts above every hex sequencer: would freeze the item
        "0055AED6DCD90281E5G",
        "0" * (SEQUENCER_WIDTH + 1),  # longer than the padding: would outsort a real one
        "",
        None,
        12345,
        " 0A",
        "0A\n",
        "０Ａ",  # full-width digits are not hex S3 writes
    ],
    ids=[
        "letters",
        "one-bad-char",
        "too-long",
        "empty",
        "missing",
        "number",
        "space",
        "newline",
        "full-width",
    ],
)
def test_a_sequencer_s3_could_not_have_written_is_refused(sequencer):
    with pytest.raises(MessageDropped, match="sequencer"):
        valid_sequencer(sequencer)
    with pytest.raises(MessageDropped, match="record 0: sequencer"):
        uploaded_objects({"Records": [s3_record(sequencer=sequencer)]})
    with pytest.raises(MessageDropped, match="malformed reprocess request"):
        reprocess_request(reprocess(sequencer=sequencer))


def test_one_forged_record_drops_the_whole_message():
    event = {"Records": [s3_record(), s3_record(sequencer="FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFZ")]}
    with pytest.raises(MessageDropped, match="record 1"):
        message_objects(event)


# -- bodies that name no upload ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"Records": []},
        {"Records": None},
        {"Records": "x"},
        {"foo": 1},
        [],
        [{"Records": []}],
        "uploads/dog.jpg",
        42,
        None,
        {"Records": [None]},
        {"Records": [{"eventName": "ObjectCreated:Put"}]},
        {"Records": [{"eventName": 7, "s3": {}}]},
        {"Records": [s3_record(key=None)]},
        {"Records": [s3_record(key="")]},
        {"Records": [s3_record(key=["uploads/a.jpg"])]},
        {"Records": [s3_record(key="uploads/" + "a" * 1100)]},  # S3 keys are at most 1024 bytes
        {"Records": [s3_record(size="ten")]},
        {"Records": [s3_record(size=-1)]},
        {"Records": [s3_record(size=float("inf"))]},
        {"Records": [s3_record(eTag={"x": 1})]},
        {"Records": [{**s3_record(), "s3": {"bucket": {"name": ""}, "object": {"key": "k"}}}]},
    ],
    ids=lambda body: repr(body)[:40],
)
def test_a_body_that_names_no_upload_is_dropped(body):
    with pytest.raises(MessageDropped):
        message_objects(body)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version_id": None, "etag": ""}, "neither version_id nor etag"),
        ({"version_id": ..., "etag": ...}, "neither version_id nor etag"),
        ({"run_id": ...}, "run_id"),
        ({"bucket": ...}, "bucket"),
        ({"key": ...}, "key"),
        ({"sequencer": ...}, "sequencer"),
        ({"bucket": None}, "bucket"),
        ({"key": 5}, "key"),
        ({"size": "big"}, "big"),
        ({"version_id": ["v1"]}, "version_id"),
    ],
)
def test_an_incomplete_reprocess_request_is_dropped_with_its_reason(change, reason):
    with pytest.raises(MessageDropped, match="malformed reprocess request") as dropped:
        message_objects(reprocess(**change))
    assert reason in dropped.value.reason
    assert isinstance(dropped.value, ValueError)  # what the reader raised before: still true


@pytest.mark.parametrize("request_body", [None, "x", 3, []])
def test_a_reprocess_field_that_is_not_an_object_is_dropped(request_body):
    with pytest.raises(MessageDropped):
        message_objects({"reprocess": request_body})


def test_a_reprocess_request_with_only_an_etag_or_only_a_version_is_complete():
    assert message_objects(reprocess(version_id=None))[0].etag == "e"
    assert message_objects(reprocess(etag=""))[0].version_id == "v1"


def test_what_s3_sends_is_still_read_as_before():
    assert message_objects({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}) == []
    removed = {**s3_record(), "eventName": "ObjectRemoved:Delete"}
    assert message_objects({"Records": [removed]}) == []  # an S3 event, nothing created
    (obj,) = message_objects({"Records": [s3_record(key="uploads/my+dog.jpg", versionId="v")]})
    assert (obj.key, obj.version_id, obj.size) == ("uploads/my dog.jpg", "v", 10)


# -- the ops side: the request builder never sends what the function drops ------------------------


@pytest.mark.parametrize(
    "item",
    [
        ITEM,
        {**ITEM, "version_id": None},
        {k: v for k, v in ITEM.items() if k != "version_id"},
        {**ITEM, "etag": ""},
    ],
    ids=["both", "null-version", "no-version", "no-etag"],
)
def test_every_request_the_ops_builder_sends_is_one_the_function_reads(item):
    (obj,) = message_objects(messages.reprocess_message(item, "rp-1"))
    assert obj.reprocess_id == "rp-1" and (obj.version_id or obj.etag)


def test_the_ops_builder_refuses_an_item_with_neither_version_nor_etag():
    item = {k: v for k, v in ITEM.items() if k not in ("version_id", "etag")}
    with pytest.raises(OpsError, match="neither a version id nor an ETag"):
        messages.reprocess_message(item, "rp-1")


# -- encryption ----------------------------------------------------------------------------------


def s3_error(code: str, status: int, message: str) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")


SSE_C_MESSAGE = (
    "The object was stored using a form of Server Side Encryption. "
    "The correct parameters must be provided to retrieve the object."
)
KMS_DENIED = (
    "User: arn:aws:sts::123456789012:assumed-role/classify/fn is not authorized to perform: "
    "kms:Decrypt on the resource associated with this ciphertext because no identity-based "
    "policy allows the kms:Decrypt action"
)


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        ("InvalidRequest", 400, SSE_C_MESSAGE),
        ("AccessDenied", 403, KMS_DENIED),
        ("AccessDenied", 403, "The ciphertext refers to a customer master key that does not exist"),
        ("KMS.AccessDeniedException", 400, "denied"),
        ("KMS.DisabledException", 400, "arn:aws:kms:us-east-1:1:key/k is disabled."),
        ("KMS.KMSInvalidStateException", 400, "key is pending deletion"),
        ("KMS.NotFoundException", 400, "Invalid keyId"),
    ],
    ids=["sse-c", "no-kms-decrypt", "cmk-gone", "kms-denied", "disabled", "pending", "not-found"],
)
def test_an_object_the_function_cannot_decrypt_is_a_failed_item_that_says_so(code, status, message):
    failure = triage_storage_error(s3_error(code, status, message), "object")
    assert type(failure) is PermanentFailure
    assert failure.error_type == "ObjectEncrypted"
    assert "encrypted" in failure.message and code in failure.message


@pytest.mark.parametrize(
    ("code", "status", "message", "expected"),
    [
        # The role lacks s3:GetObject: every upload fails alike, the stack is wrong.
        ("AccessDenied", 403, "Access Denied", ConfigurationFailure),
        # A bucket's or key's name may hold "kms": still the role, not the object's key.
        (
            "AccessDenied",
            403,
            "User: arn:aws:sts::1:assumed-role/fn is not authorized to perform: s3:GetObject "
            "on resource: arn:aws:s3:::photos-kms-key-test/uploads/kms.jpg",
            ConfigurationFailure,
        ),
        # Another InvalidRequest is not about encryption: as before (unknown → kept, transient).
        ("InvalidRequest", 400, "Something else about the request", None),
    ],
)
def test_errors_that_are_not_about_encryption_keep_their_class(code, status, message, expected):
    failure = triage_storage_error(s3_error(code, status, message), "object")
    assert failure.error_type == code
    if expected is not None:
        assert type(failure) is expected
    else:
        assert not isinstance(failure, PermanentFailure)


def test_kms_codes_from_the_table_stay_configuration():
    error = s3_error("KMS.DisabledException", 400, "the table's key is disabled")
    failure = triage_storage_error(error, "table")
    assert not isinstance(failure, PermanentFailure)
    error = s3_error("KMS.AccessDeniedException", 400, "denied")
    assert type(triage_storage_error(error, "table")) is ConfigurationFailure
