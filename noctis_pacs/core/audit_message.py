"""Audit records as DICOM audit messages (PS3.15 A.5) in RFC 5424 syslog frames.

Pure formatting for the syslog export (``storage/audit_export.py``): each record of the
trail becomes one ``AuditMessage`` XML document of the DICOM audit message schema
(PS3.15 A.5.1: ``EventIdentification``, ``ActiveParticipant``,
``AuditSourceIdentification``, ``ParticipantObjectIdentification``; coded values carry
``csd-code`` / ``codeSystemName`` / ``originalText``), the payload of an RFC 5424
message (facility 10 security/authorization, severity 5 notice, MSGID
``IHE+RFC-3881`` as IHE ITI TF-2a 3.20.4.1.1 asks), framed by its octet count
(RFC 6587 3.4.1, the framing RFC 5425 prescribes for TLS).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from noctis_pacs.core.audit import AuditAction, AuditEvent, AuditOutcome

#: RFC 5424 6.2.1: PRI = facility * 8 + severity; 10 = security/authorization, 5 = notice.
SYSLOG_PRI = 10 * 8 + 5
#: IHE ITI TF-2a 3.20.4.1.1: the MSGID of an audit message.
SYSLOG_MSGID = "IHE+RFC-3881"
#: Participant objects listed per message at most (a C-FIND answer can name thousands).
MAX_STUDIES = 1000


@dataclass(frozen=True)
class Code:
    """A coded value (PS3.15 A.5.1 CodedValueType)."""

    code: str
    scheme: str
    meaning: str


def _dcm(code: str, meaning: str) -> Code:
    return Code(code, "DCM", meaning)


# PS3.16 CID 400 (Audit Event ID) and CID 401-403 (event type codes) used here.
APPLICATION_ACTIVITY = _dcm("110100", "Application Activity")
AUDIT_LOG_USED = _dcm("110101", "Audit Log Used")
INSTANCES_ACCESSED = _dcm("110103", "DICOM Instances Accessed")
INSTANCES_TRANSFERRED = _dcm("110104", "DICOM Instances Transferred")
STUDY_DELETED = _dcm("110105", "DICOM Study Deleted")
EXPORT = _dcm("110106", "Export")
IMPORT = _dcm("110107", "Import")
ORDER_RECORD = _dcm("110109", "Order Record")
PATIENT_RECORD = _dcm("110110", "Patient Record")
PROCEDURE_RECORD = _dcm("110111", "Procedure Record")
QUERY = _dcm("110112", "Query")
SECURITY_ALERT = _dcm("110113", "Security Alert")
USER_AUTHENTICATION = _dcm("110114", "User Authentication")
APPLICATION_START = _dcm("110120", "Application Start")
LOGIN = _dcm("110122", "Login")
LOGOUT = _dcm("110123", "Logout")
NODE_AUTHENTICATION = _dcm("110126", "Node Authentication")
RESTRICTED_FUNCTION = _dcm("110132", "Use of Restricted Function")
USER_SECURITY_CHANGED = _dcm("110137", "User security Attributes Changed")
# PS3.16 CID 402 (Audit Active Participant Role ID Code)
ROLE_DESTINATION = _dcm("110152", "Destination Role ID")
ROLE_SOURCE = _dcm("110153", "Source Role ID")
# PS3.16 CID 404 (Audit Participant Object ID Type Code)
STUDY_INSTANCE_UID = _dcm("110180", "Study Instance UID")
SOP_CLASS_UID = _dcm("110181", "SOP Class UID")
#: RFC 3881 / PS3.15 A.5.1 AuditSourceTypeCode 4: application server process tier.
SOURCE_APPLICATION_SERVER = Code("4", "DCM", "Application Server process tier")

#: Study Root Query/Retrieve Information Model - FIND (PS3.4 C.3.4), the query object's
#: SOP class for DICOMweb searches too (they query the same model).
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
MWL_FIND = "1.2.840.10008.5.1.4.31"


@dataclass(frozen=True)
class EventKind:
    """How one action is told in a DICOM audit message."""

    event_id: Code
    #: EventActionCode: C(reate), R(ead), U(pdate), D(elete), E(xecute).
    action_code: str
    event_type: Code | None = None
    #: For transfers: the requesting participant's role (the archive takes the other).
    requestor_role: Code | None = None
    #: For queries: the SOP class named by the query participant object.
    query_sop_class: str = ""


_READ = EventKind(INSTANCES_TRANSFERRED, "R", requestor_role=ROLE_DESTINATION)
_QUERY = EventKind(QUERY, "E", query_sop_class=STUDY_ROOT_FIND)

#: Every action of the trail (``AuditAction``) and its audit message event (PS3.15 A.5.3).
EVENT_KINDS: dict[str, EventKind] = {
    AuditAction.QIDO: _QUERY,
    AuditAction.C_FIND: _QUERY,
    AuditAction.MWL: EventKind(QUERY, "E", query_sop_class=MWL_FIND),
    AuditAction.WORKFLOW_READ: EventKind(QUERY, "E"),
    AuditAction.WORKFLOW_EVENTS: EventKind(QUERY, "E"),
    AuditAction.WADO: _READ,
    AuditAction.WADO_METADATA: _READ,
    AuditAction.WADO_FRAMES: _READ,
    AuditAction.WADO_BULKDATA: _READ,
    AuditAction.WADO_RENDERED: _READ,
    AuditAction.WADO_THUMBNAIL: _READ,
    AuditAction.WADO_URI: _READ,
    AuditAction.MPR: _READ,
    AuditAction.MIP: _READ,
    AuditAction.C_MOVE: _READ,
    AuditAction.C_GET: _READ,
    AuditAction.STOW: EventKind(INSTANCES_TRANSFERRED, "C", requestor_role=ROLE_SOURCE),
    AuditAction.C_STORE: EventKind(INSTANCES_TRANSFERRED, "C", requestor_role=ROLE_SOURCE),
    AuditAction.IMPORT: EventKind(IMPORT, "C"),
    AuditAction.DELETE: EventKind(STUDY_DELETED, "D"),
    AuditAction.WORKFLOW_WRITE: EventKind(ORDER_RECORD, "U"),
    AuditAction.MPPS: EventKind(PROCEDURE_RECORD, "U"),
    AuditAction.AUTH_FAILURE: EventKind(USER_AUTHENTICATION, "E", LOGIN),
    AuditAction.LOGIN: EventKind(USER_AUTHENTICATION, "E", LOGIN),
    AuditAction.LOGOUT: EventKind(USER_AUTHENTICATION, "E", LOGOUT),
    AuditAction.ACCESS_DENIED: EventKind(SECURITY_ALERT, "E", RESTRICTED_FUNCTION),
    AuditAction.ASSOCIATION_REJECTED: EventKind(SECURITY_ALERT, "E", NODE_AUTHENTICATION),
    AuditAction.TOKEN_CREATE: EventKind(SECURITY_ALERT, "E", USER_SECURITY_CHANGED),
    AuditAction.TOKEN_REVOKE: EventKind(SECURITY_ALERT, "E", USER_SECURITY_CHANGED),
    AuditAction.CONFIG_REFUSED: EventKind(APPLICATION_ACTIVITY, "E", APPLICATION_START),
    AuditAction.AUDIT_READ: EventKind(AUDIT_LOG_USED, "R"),
    AuditAction.AUDIT_PRUNE: EventKind(AUDIT_LOG_USED, "D"),
}
#: An action added later without a row above is still sent, as an application activity.
_FALLBACK = EventKind(APPLICATION_ACTIVITY, "E")

#: PS3.15 A.5.1 EventOutcomeIndicator: 0 success, 4 minor failure, 8 serious failure.
OUTCOME_INDICATORS: dict[str, str] = {
    AuditOutcome.SUCCESS: "0",
    AuditOutcome.PARTIAL: "4",
    AuditOutcome.DENIED: "4",
    AuditOutcome.FAILURE: "8",
}


def _coded(parent: ET.Element, tag: str, code: Code) -> None:
    ET.SubElement(
        parent,
        tag,
        {"csd-code": code.code, "codeSystemName": code.scheme, "originalText": code.meaning},
    )


def _access_point(address: str) -> tuple[str, str]:
    """NetworkAccessPointID and its type code: 2 for an IP address, 1 for a host name."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return address, "1"
    return address, "2"


@dataclass(frozen=True)
class ExportStats:
    """The syslog export's counters since the process started (``noctis_audit_syslog_*``
    metrics)."""

    sent: int
    dropped: int
    connect_failures: int
    queued: int


@dataclass(frozen=True)
class AuditSource:
    """This archive, as the messages name it."""

    #: AuditSourceID and the archive's participant UserID (``audit.syslog.app_name``).
    source_id: str
    #: The machine's name: the archive's NetworkAccessPointID and RFC 5424 HOSTNAME.
    hostname: str
    #: The process id: the archive's AlternativeUserID and RFC 5424 PROCID.
    process_id: str


def audit_message(event: AuditEvent, source: AuditSource, *, seq: int | None = None) -> bytes:
    """One ``AuditMessage`` (PS3.15 A.5.1) for ``event``, UTF-8 XML with its declaration.

    The requesting participant is the principal (an AE title also as
    ``AETITLES=`` AlternativeUserID, PS3.15 A.5.2.1) at the client's address; the
    archive is the other participant; each study is a participant object (Study
    Instance UID, PS3.15 A.5.2.5); a query's keys are its query object (the matching
    keys as JSON, base64, PS3.15 A.5.3.11). The archive participant's ``UserName`` is
    ``seq=N``, the record's place in the index's hash chain, so that a collector's copy
    can be matched with the trail.
    """
    kind = EVENT_KINDS.get(event.action, _FALLBACK)
    root = ET.Element("AuditMessage")
    ident = ET.SubElement(
        root,
        "EventIdentification",
        {
            "EventActionCode": kind.action_code,
            "EventDateTime": event.time,
            "EventOutcomeIndicator": OUTCOME_INDICATORS.get(event.outcome, "8"),
        },
    )
    _coded(ident, "EventID", kind.event_id)
    if kind.event_type is not None:
        _coded(ident, "EventTypeCode", kind.event_type)
    if event.detail:
        ET.SubElement(ident, "EventOutcomeDescription").text = event.detail

    requestor = {"UserID": event.principal or "anonymous", "UserIsRequestor": "true"}
    if event.principal_kind == "ae" and event.principal:
        requestor["AlternativeUserID"] = f"AETITLES={event.principal}"
    if event.principal_kind:
        requestor["UserName"] = f"{event.principal_kind}:{event.principal or 'anonymous'}"
    if event.client:
        point, point_type = _access_point(event.client)
        requestor["NetworkAccessPointID"] = point
        requestor["NetworkAccessPointTypeCode"] = point_type
    participant = ET.SubElement(root, "ActiveParticipant", requestor)
    if kind.requestor_role is not None:
        _coded(participant, "RoleIDCode", kind.requestor_role)

    archive = {
        "UserID": source.source_id,
        "AlternativeUserID": source.process_id,
        "UserIsRequestor": "false",
        "NetworkAccessPointID": source.hostname,
        "NetworkAccessPointTypeCode": _access_point(source.hostname)[1],
    }
    if seq is not None:
        archive["UserName"] = f"seq={seq}"
    participant = ET.SubElement(root, "ActiveParticipant", archive)
    if kind.requestor_role is not None:
        other = ROLE_SOURCE if kind.requestor_role == ROLE_DESTINATION else ROLE_DESTINATION
        _coded(participant, "RoleIDCode", other)

    audit_source = ET.SubElement(
        root, "AuditSourceIdentification", {"AuditSourceID": source.source_id}
    )
    _coded(audit_source, "AuditSourceTypeCode", SOURCE_APPLICATION_SERVER)

    for study_uid in event.study_uids[:MAX_STUDIES]:
        study = ET.SubElement(
            root,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": study_uid,
                # 2 = system object, 3 = report (PS3.15 A.5.2.5, RFC 3881 tables).
                "ParticipantObjectTypeCode": "2",
                "ParticipantObjectTypeCodeRole": "3",
            },
        )
        _coded(study, "ParticipantObjectIDTypeCode", STUDY_INSTANCE_UID)
        if event.series_uids or event.sop_uids:
            description = ET.SubElement(study, "ParticipantObjectDescription")
            description.text = f"{len(event.series_uids)} series, {len(event.sop_uids)} instance(s)"
    if kind.query_sop_class:
        query = ET.SubElement(
            root,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": kind.query_sop_class,
                "ParticipantObjectTypeCode": "2",
                # 3 = report; the query is the object (PS3.15 A.5.3.11).
                "ParticipantObjectTypeCodeRole": "3",
            },
        )
        _coded(query, "ParticipantObjectIDTypeCode", SOP_CLASS_UID)
        keys = json.dumps(dict(sorted(event.query.items())), ensure_ascii=False)
        ET.SubElement(query, "ParticipantObjectQuery").text = base64.b64encode(
            keys.encode("utf-8")
        ).decode("ascii")
    return bytes(ET.tostring(root, encoding="UTF-8", xml_declaration=True))


def _header_field(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without space, at most ``limit``,
    ``-`` (NILVALUE) when empty."""
    text = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return text or "-"


def syslog_frame(message: bytes, *, time: str, source: AuditSource, app_name: str) -> bytes:
    """``message`` as one RFC 5424 syslog message, octet-counted (RFC 6587 3.4.1:
    ``MSG-LEN SP SYSLOG-MSG``).

    ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - BOM MSG``: no structured data; the
    XML is UTF-8, so MSG starts with the byte order mark (RFC 5424 6.4).
    """
    header = " ".join(
        (
            f"<{SYSLOG_PRI}>1",
            _header_field(time, 32) if time else "-",
            _header_field(source.hostname, 255),
            _header_field(app_name, 48),
            _header_field(source.process_id, 128),
            SYSLOG_MSGID,
            "-",
        )
    )
    body = header.encode("ascii") + b" \xef\xbb\xbf" + message
    return str(len(body)).encode("ascii") + b" " + body
