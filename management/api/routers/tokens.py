"""/api/tokens: admins issue tokens for tenants."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from flops_management import auth
from flops_management.api.deps import PrincipalDep, StoreDep

router = APIRouter(prefix="/api/tokens", tags=["tokens"])


@router.post("", status_code=201)
def create_token(
    principal: PrincipalDep,
    store: StoreDep,
    tenant: Annotated[str, Body()],
    name: Annotated[str, Body()] = "",
    admin: Annotated[bool, Body()] = False,
) -> dict[str, Any]:
    """The token is in this response only; FLOps keeps just its hash."""
    auth.require_admin(principal)
    token = auth.issue(store, tenant, admin=admin, name=name)
    return {"tenant": tenant, "name": name, "admin": admin, "token": token}
