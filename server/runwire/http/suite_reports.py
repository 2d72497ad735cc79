"""`GET /suite-runs/{id}/junit.xml` and `/suite-runs/{id}/report.json`: a suite run's report.

`?base=<run id>` (or `?base=baseline`, the suite's baseline) adds the comparison: each case's
change and the verdict. Authenticated with `Authorization: Bearer …`, as the API is.
"""

from __future__ import annotations

import json
from typing import Annotated

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ServiceUnavailableException,
    ValidationException,
)
from litestar.params import Parameter

from runwire.core import Core
from runwire.domain.access import Forbidden, Permission, Unauthenticated
from runwire.domain.suite_reports import json_report, junit_xml
from runwire.domain.suite_results import SuiteComparison, SuiteRunResult
from runwire.domain.suites import SuiteMismatch
from runwire.errors import NotFound, Unavailable
from runwire.faults import is_outage
from runwire.http.bearer import bearer_credential
from runwire.scenarios.limits import unstorable

BASELINE = "baseline"


async def _report(
    request: Request[object, object, State], core: Core, run_id: str, base: str | None
) -> tuple[SuiteRunResult, SuiteComparison | None]:
    for value in (run_id, base or ""):
        if unstorable(value) or len(value) > 36:
            raise NotFoundException("suite run not found")  # no run has such an id
    try:
        actor = await core.authenticator.authenticate(bearer_credential(request.headers))
        actor.require(Permission.EXECUTION_READ)
        if base is None:
            return await core.suites.run_result(run_id, actor), None
        comparison = await core.suites.compare(run_id, None if base == BASELINE else base, actor)
        return comparison.head, comparison
    except Unauthenticated as error:
        raise NotAuthorizedException(
            error.message, headers={"WWW-Authenticate": 'Bearer realm="runwire"'}
        ) from None
    except Forbidden as error:
        raise PermissionDeniedException(error.message) from None
    except NotFound as error:
        raise NotFoundException(error.message) from None
    except SuiteMismatch as error:
        raise ValidationException(error.message) from None
    except Exception as error:
        if not is_outage(error):
            raise
        raise ServiceUnavailableException(
            Unavailable().message, headers={"Retry-After": "1"}
        ) from None


def _headers(run_id: str, suffix: str) -> dict[str, str]:
    # Run ids are UUIDs (checked above to be short and storable): no quoting needed.
    return {
        "Content-Disposition": f'attachment; filename="suite-run-{run_id}.{suffix}"',
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }


@get("/suite-runs/{run_id:str}/junit.xml")
async def suite_run_junit(
    request: Request[object, object, State],
    state: State,
    run_id: str,
    base: Annotated[str | None, Parameter(query="base")] = None,
) -> Response[bytes]:
    result, comparison = await _report(request, state.core, run_id, base)
    return Response(
        junit_xml(result, comparison),
        media_type="application/xml",
        headers=_headers(run_id, "xml"),
    )


@get("/suite-runs/{run_id:str}/report.json")
async def suite_run_json(
    request: Request[object, object, State],
    state: State,
    run_id: str,
    base: Annotated[str | None, Parameter(query="base")] = None,
) -> Response[bytes]:
    result, comparison = await _report(request, state.core, run_id, base)
    body = json.dumps(json_report(result, comparison), indent=2).encode()
    return Response(body, media_type="application/json", headers=_headers(run_id, "json"))
