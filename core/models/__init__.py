"""SQLAlchemy models of the whole domain; importing this package registers every table on `Base.metadata`."""

from remotegpu.core.models.access import AccessEndpoint
from remotegpu.core.models.base import Base
from remotegpu.core.models.billing import BillingInterval, Invoice, InvoiceLine, Meter, Price
from remotegpu.core.models.claims import Allocation, ClaimHistory, GpuClaim, PortMapping
from remotegpu.core.models.datasets import Dataset, HomeVolume
from remotegpu.core.models.environments import Environment
from remotegpu.core.models.events import Event
from remotegpu.core.models.identity import ApiToken, PasswordReset, User
from remotegpu.core.models.images import Image
from remotegpu.core.models.inventory import Gpu, GpuPool, Host
from remotegpu.core.models.leadership import LeaderTerm, ShardLeader
from remotegpu.core.models.queue import QueueBucket
from remotegpu.core.models.registries import Registry, RegistryProject
from remotegpu.core.models.secrets import StoredSecret
from remotegpu.core.models.ssh_keys import SshKey
from remotegpu.core.models.throttling import SignInCounter
from remotegpu.core.models.workspaces import GpuModelQuota, ResourceQuota, Workspace, WorkspaceMember

__all__ = [
    "AccessEndpoint",
    "Allocation",
    "ApiToken",
    "Base",
    "BillingInterval",
    "ClaimHistory",
    "Dataset",
    "Environment",
    "Event",
    "Gpu",
    "GpuClaim",
    "GpuModelQuota",
    "GpuPool",
    "HomeVolume",
    "Host",
    "Image",
    "Invoice",
    "InvoiceLine",
    "LeaderTerm",
    "Meter",
    "PasswordReset",
    "PortMapping",
    "Price",
    "QueueBucket",
    "Registry",
    "RegistryProject",
    "ResourceQuota",
    "ShardLeader",
    "SignInCounter",
    "SshKey",
    "StoredSecret",
    "User",
    "Workspace",
    "WorkspaceMember",
]
