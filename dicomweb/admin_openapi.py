"""The OpenAPI 3.1 description of the admin API, served at ``/api/openapi.json``.

``tests/test_admin_api.py`` checks that every route under ``/api`` is described here
with its method, so the description cannot fall behind the routes.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_UID = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)*$"}


def _param(name: str, schema: dict[str, Any], where: str = "path") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": schema}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}, {"basic": []}],
        "responses": {**responses, "400": _ERROR, "401": _ERROR, "403": _ERROR},
    }
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return operation


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_NO_CONTENT = {"description": "Done"}
_STUDY, _SERIES, _INSTANCE = (
    _param("study", _UID),
    _param("series", _UID),
    _param("instance", _UID),
)
_NAME = _param("name", {"type": "string"})
_DICOMDIR = _param("dicomdir", {"type": "boolean", "default": True}, "query")
_EXPORT_RESPONSES = {
    "200": {
        "description": "The zip",
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    },
    "404": _ERROR,
    "422": _ERROR,
}
_JOB = _param("job", {"type": "integer"})
_DEID = {
    "type": "object",
    "required": ["study"],
    "properties": {
        "study": _UID,
        "output": {"enum": ["zip", "store"], "default": "zip"},
        "options": {
            "type": "object",
            "properties": {
                "retain_longitudinal_dates": {"type": "boolean", "default": False},
                "clean_descriptors": {"type": "boolean", "default": False},
                "burned_in": {"enum": ["refuse", "warn"], "default": "refuse"},
                "patient_name": {"type": "string"},
                "patient_id": {"type": "string"},
            },
        },
    },
}
_MODIFY = {
    "type": "object",
    "properties": {
        "replace": {
            "type": "object",
            "description": "attribute keyword or tag (8 hex digits) -> new value (list: several)",
        },
        "remove": {"type": "array", "items": {"type": "string"}},
        "keep_uids": {"type": "boolean", "default": False},
        "keep_original": {"type": "boolean", "description": "default: [modify] keep_original"},
    },
}
_MODIFY_RESPONSES = {
    "200": _json(
        {
            "type": "object",
            "properties": {
                "level": {"type": "string"},
                "old_uid": _UID,
                "new_uid": _UID,
                "study_uid": _UID,
                "instances": {"type": "integer"},
                "kept_original": {"type": "boolean"},
            },
        }
    ),
    "404": _ERROR,
}
_REMOTE = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
        "kind": {"enum": ["dimse", "dicomweb"], "default": "dimse"},
        "ae_title": {"type": "string", "maxLength": 16},
        "host": {"type": "string"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "permissions": {"type": "array", "items": {"enum": ["store", "query", "retrieve"]}},
        "check_host": {"type": "boolean"},
        "url": {"type": "string", "description": "DICOMweb service root (kind dicomweb)"},
        "username": {"type": "string"},
        "secret": {"type": "string", "writeOnly": True},
    },
}
_JOB_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string"},
        "state": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "destination": {"type": "string"},
        "total": {"type": "integer"},
        "done": {"type": "integer"},
        "failed": {"type": "integer"},
        "attempts": {"type": "integer"},
        "max_attempts": {"type": "integer"},
        "progress": {"type": "number"},
        "error": {"type": "string"},
    },
}
_SEND = {
    "type": "object",
    "required": ["destination"],
    "properties": {
        "destination": {"type": "string", "description": "a remote's name"},
        "study": _UID,
        "series": _UID,
        "instances": {"type": "array", "items": _UID},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5},
    },
}


_RULE = {
    "type": "object",
    "required": ["name", "destinations"],
    "properties": {
        "name": {"type": "string"},
        "on": {"enum": ["received", "stable"], "default": "received"},
        "matches": {
            "type": "object",
            "description": "attribute keyword (or CallingAETitle) -> DICOM matching value",
            "additionalProperties": {"type": "string"},
        },
        "destinations": {"type": "array", "items": {"type": "string"}},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
        "enabled": {"type": "boolean", "default": True},
    },
}
_POLICY = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "max_age_days": {"type": "integer", "minimum": 0},
        "basis": {"enum": ["study_date", "received"], "default": "study_date"},
        "quota_bytes": {"type": "integer", "minimum": 0},
        "facility": {"type": "string"},
        "modality": {"type": "string"},
        "enabled": {"type": "boolean", "default": True},
    },
}
_DEAD_CHOICE = {
    "type": "object",
    "properties": {
        "ids": {"type": "array", "items": {"type": "integer"}},
        "all": {"type": "boolean"},
    },
}


def openapi_document() -> dict[str, Any]:
    delete_responses = {"204": _NO_CONTENT, "404": _ERROR}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Noctis PACS admin API",
            "version": "1",
            "description": "Statistics, deletes, remote AEs and send jobs (docs/admin.md). "
            "Every operation needs the admin permission and is audited.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
            "responses": {
                "Error": _json(
                    {
                        "type": "object",
                        "properties": {
                            "status": {"type": "integer"},
                            "error": {"type": "string"},
                            "detail": {"type": "string"},
                        },
                    },
                    "The failure and its reason",
                )
            },
        },
        "paths": {
            "/api/openapi.json": {"get": _op("This description", {"200": _json({})})},
            "/api/statistics": {
                "get": _op(
                    "Counts per level, bytes, free space, ingest rates, jobs per state",
                    {"200": _json({"type": "object"})},
                )
            },
            "/api/studies/{study}": {
                "delete": _op("Delete a study", delete_responses, params=[_STUDY])
            },
            "/api/studies/{study}/series/{series}": {
                "delete": _op("Delete a series", delete_responses, params=[_STUDY, _SERIES])
            },
            "/api/studies/{study}/series/{series}/instances/{instance}": {
                "delete": _op(
                    "Delete an instance", delete_responses, params=[_STUDY, _SERIES, _INSTANCE]
                )
            },
            "/api/studies/{study}/export": {
                "get": _op(
                    "The study as a zip: PS3.10 media with a DICOMDIR, or the stored files",
                    _EXPORT_RESPONSES,
                    params=[_STUDY, _DICOMDIR],
                )
            },
            "/api/studies/{study}/series/{series}/export": {
                "get": _op(
                    "The series as a zip (as the study's)",
                    _EXPORT_RESPONSES,
                    params=[_STUDY, _SERIES, _DICOMDIR],
                )
            },
            "/api/studies/{study}/modify": {
                "post": _op(
                    "Modify the study's attributes (new UIDs unless keep_uids)",
                    _MODIFY_RESPONSES,
                    params=[_STUDY],
                    body=_MODIFY,
                )
            },
            "/api/studies/{study}/series/{series}/modify": {
                "post": _op(
                    "Modify the series' attributes (new series and instance UIDs unless keep_uids)",
                    _MODIFY_RESPONSES,
                    params=[_STUDY, _SERIES],
                    body=_MODIFY,
                )
            },
            "/api/studies/{study}/series/{series}/instances/{instance}/modify": {
                "post": _op(
                    "Modify an instance's attributes (a new SOP Instance UID unless keep_uids)",
                    _MODIFY_RESPONSES,
                    params=[_STUDY, _SERIES, _INSTANCE],
                    body=_MODIFY,
                )
            },
            "/api/jobs/deidentify": {
                "post": _op(
                    "De-identify a study (PS3.15 Annex E Basic Profile) as a job: a zip "
                    "(PS3.10 media) or a new study",
                    {"202": _json(_JOB_SCHEMA, "Queued"), "404": _ERROR},
                    body=_DEID,
                )
            },
            "/api/jobs/{job}/result": {
                "get": _op(
                    "A finished de-identification's zip, or its summary (new study UID)",
                    {
                        **_EXPORT_RESPONSES,
                        "200": {
                            "description": "The zip, or the summary as JSON",
                            "content": {
                                "application/zip": {
                                    "schema": {"type": "string", "format": "binary"}
                                },
                                "application/json": {"schema": {"type": "object"}},
                            },
                        },
                    },
                    params=[_JOB],
                )
            },
            "/api/remotes": {
                "get": _op(
                    "Remote AEs and DICOMweb peers (configured ones read-only)",
                    {"200": _json({"type": "array", "items": _REMOTE})},
                ),
                "post": _op(
                    "Add a remote, used at once by C-MOVE and the allow-list",
                    {"201": _json(_REMOTE, "Added"), "409": _ERROR},
                    body=_REMOTE,
                ),
            },
            "/api/remotes/{name}": {
                "get": _op("One remote", {"200": _json(_REMOTE), "404": _ERROR}, params=[_NAME]),
                "delete": _op(
                    "Remove a remote kept in the index",
                    {"204": _NO_CONTENT, "404": _ERROR, "409": _ERROR},
                    params=[_NAME],
                ),
            },
            "/api/remotes/{name}/echo": {
                "post": _op(
                    "C-ECHO the remote; the reason when it fails",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "ok": {"type": "boolean"},
                                    "reason": {"type": "string"},
                                    "milliseconds": {"type": "number"},
                                },
                            }
                        ),
                        "404": _ERROR,
                    },
                    params=[_NAME],
                )
            },
            "/api/jobs": {
                "get": _op(
                    "Jobs, newest first",
                    {"200": _json({"type": "array", "items": _JOB_SCHEMA})},
                    params=[
                        _param("state", {"type": "string"}, "query"),
                        _param("limit", {"type": "integer"}, "query"),
                        _param("offset", {"type": "integer"}, "query"),
                    ],
                )
            },
            "/api/jobs/send": {
                "post": _op(
                    "Send a study, series or instances to a remote (a job)",
                    {"202": _json(_JOB_SCHEMA, "Queued"), "404": _ERROR},
                    body=_SEND,
                )
            },
            "/api/jobs/{job}": {
                "get": _op(
                    "A job with its per-instance outcomes",
                    {"200": _json(_JOB_SCHEMA), "404": _ERROR},
                    params=[_JOB],
                )
            },
            "/api/jobs/{job}/cancel": {
                "post": _op(
                    "Cancel a queued or running job",
                    {"200": _json(_JOB_SCHEMA), "404": _ERROR, "409": _ERROR},
                    params=[_JOB],
                )
            },
            "/api/studies/{study}/protected": {
                "put": _op(
                    "Protect a study from retention",
                    {"200": _json({"type": "object"}), "201": _json({"type": "object"})},
                    params=[_STUDY],
                    body={"type": "object", "properties": {"reason": {"type": "string"}}},
                ),
                "delete": _op(
                    "Remove the protection",
                    {"204": _NO_CONTENT, "404": _ERROR},
                    params=[_STUDY],
                ),
            },
            "/api/retention/policies": {
                "get": _op(
                    "Retention policies", {"200": _json({"type": "array", "items": _POLICY})}
                ),
                "post": _op(
                    "Save a policy",
                    {"201": _json(_POLICY, "Saved"), "409": _ERROR},
                    body=_POLICY,
                ),
            },
            "/api/retention/policies/{name}": {
                "delete": _op(
                    "Remove a policy", {"204": _NO_CONTENT, "404": _ERROR}, params=[_NAME]
                )
            },
            "/api/retention/run": {
                "post": _op(
                    "Apply the policies now (dry_run=true, the default: list what would go)",
                    {"200": _json({"type": "object"})},
                    params=[_param("dry_run", {"type": "boolean", "default": True}, "query")],
                )
            },
            "/api/retention/protected": {
                "get": _op(
                    "Protected studies",
                    {"200": _json({"type": "array", "items": {"type": "object"}})},
                )
            },
            "/api/routing/rules": {
                "get": _op("Routing rules", {"200": _json({"type": "array", "items": _RULE})}),
                "post": _op(
                    "Save a rule (refused with the reason for an unknown attribute or destination)",
                    {"201": _json(_RULE, "Saved"), "409": _ERROR},
                    body=_RULE,
                ),
            },
            "/api/routing/rules/{name}": {
                "delete": _op("Remove a rule", {"204": _NO_CONTENT, "404": _ERROR}, params=[_NAME])
            },
            "/api/routing/queue": {
                "get": _op(
                    "Queue depth (inbox, queued, dead) and the oldest item's age",
                    {"200": _json({"type": "object"})},
                )
            },
            "/api/routing/dead": {
                "get": _op(
                    "Dead letters: items that used up their attempts",
                    {"200": _json({"type": "array", "items": {"type": "object"}})},
                    params=[
                        _param("limit", {"type": "integer"}, "query"),
                        _param("offset", {"type": "integer"}, "query"),
                    ],
                )
            },
            "/api/routing/dead/retry": {
                "post": _op(
                    "Queue dead letters again",
                    {"200": _json({"type": "object"})},
                    body=_DEAD_CHOICE,
                )
            },
            "/api/routing/dead/drop": {
                "post": _op(
                    "Drop dead letters", {"200": _json({"type": "object"})}, body=_DEAD_CHOICE
                )
            },
            "/api/jobs/{job}/retry": {
                "post": _op(
                    "Queue a failed or cancelled job again (its unsent instances)",
                    {"200": _json(_JOB_SCHEMA), "404": _ERROR, "409": _ERROR},
                    params=[_JOB],
                )
            },
        },
    }
