"""Every table of portal, one module per aggregate; importing this package registers them all."""

from portal.db.models.audit import CHAIN_HEAD_ID, AuditChainHead, AuditEvent
from portal.db.models.budgets import Budget, BudgetKind, BudgetPeriodAlignment, SubjectType
from portal.db.models.cache import CompletionCacheEntry
from portal.db.models.catalog import Credential, Deployment, Model, Provider
from portal.db.models.grants import Grant
from portal.db.models.keys import TENANT_SCOPED_ROLES, AdminRole, ApiKey, KeyStatus
from portal.db.models.leases import Lease
from portal.db.models.requests import RequestLog, SpendDaily
from portal.db.models.sessions import WebSession
from portal.db.models.tenants import Tenant, TenantStatus
from portal.db.models.users import Membership, MembershipRole, User, UserIdentity, UserRole, UserStatus

__all__ = [
    "CHAIN_HEAD_ID",
    "TENANT_SCOPED_ROLES",
    "AdminRole",
    "ApiKey",
    "AuditChainHead",
    "AuditEvent",
    "Budget",
    "BudgetKind",
    "BudgetPeriodAlignment",
    "CompletionCacheEntry",
    "Credential",
    "Deployment",
    "Grant",
    "KeyStatus",
    "Lease",
    "Membership",
    "MembershipRole",
    "Model",
    "Provider",
    "RequestLog",
    "SpendDaily",
    "SubjectType",
    "Tenant",
    "TenantStatus",
    "User",
    "UserIdentity",
    "UserRole",
    "UserStatus",
    "WebSession",
]
