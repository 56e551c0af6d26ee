"""Domain errors. Each carries a message a person can act on; the Slack layer shows it as is.

DsrError
 ├── ConfigurationError        a setting is missing or invalid
 ├── InvalidRequest            the intake is incomplete or inconsistent
 ├── AlreadyFiled              the same intake (a replayed submission) filed a request already
 ├── NotFound                  no request (or other record) by that reference
 ├── PermissionDenied          the user's role does not allow it (or four-eyes forbids it)
 ├── AlreadyDecided            the approval decision was taken already
 ├── TransitionNotAllowed      the lifecycle forbids this status change
 ├── ConcurrentUpdate          someone else changed the request first
 ├── ExtensionNotAllowed       the deadline cannot be extended (again, late, no reason, law)
 ├── UnknownJurisdiction       no deadline rules for that jurisdiction code
 └── AuditChainBroken          the audit trail fails verification
"""

from __future__ import annotations


class DsrError(Exception):
    """Base of every error this product raises on purpose."""


class ConfigurationError(DsrError):
    pass


class InvalidRequest(DsrError):
    pass


class AlreadyFiled(DsrError):
    def __init__(self, reference: str) -> None:
        super().__init__(f"This form filed {reference} already: nothing new was filed.")
        self.reference = reference


class NotFound(DsrError):
    pass


class PermissionDenied(DsrError):
    pass


class AlreadyDecided(DsrError):
    pass


class TransitionNotAllowed(DsrError):
    pass


class ConcurrentUpdate(DsrError):
    pass


class ExtensionNotAllowed(DsrError):
    pass


class UnknownJurisdiction(DsrError):
    pass


class AuditChainBroken(DsrError):
    pass
