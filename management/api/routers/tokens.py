"""/api/tokens: admins issue tokens for tenants."""

from __future__ import annotations

from fastapi import APIRouter

from flops_management import auth
from flops_management.api.deps import PrincipalDep, StoreDep
from flops_management.api.schemas import (
    AUTHENTICATED,
    TokenOut,
    TokenRequest,
    errors,
)

router = APIRouter(prefix="/api/tokens", tags=["tokens"])


@router.post("", status_code=201, responses=errors(*AUTHENTICATED, 400, 403, 413))
def create_token(
    principal: PrincipalDep, store: StoreDep, request: TokenRequest
) -> TokenOut:
    """The token is in this response only; FLOps keeps just its hash."""
    auth.require_admin(principal)
    token = auth.issue(store, request.tenant, admin=request.admin, name=request.name)
    return TokenOut(
        tenant=request.tenant, name=request.name, admin=request.admin, token=token
    )
