"""The pinning step: resolve the spec's image tag to a digest before the pod is created.

The digest is observed state: it is kept beside the phase (`image_digest`, with the reference and the
generation it was resolved for), never written into the spec, so re-applying an unchanged file after
an upstream retag changes nothing, and the pod runs `host/repository@sha256:…`. It is resolved again
only when the spec names another image, or when `restart --pull` asked for it (`image_pull_generation`
newer than the pin). A stop and a start, a re-created pod, a plain restart: the same digest.

The registry call is made with no database session open (the registry's configuration is read before,
from a cache). A registry that does not answer is a retry with backoff (failed at the phase deadline);
a tag that no longer exists fails the environment with `ImageGone`. Images of registries that are not
configured, or already named by digest, run as written.
"""

from __future__ import annotations

from remotegpu.core.registry.client import ReferenceGoneError, RegistryAuthError, RegistryUnavailableError
from remotegpu.core.registry.directory import split_image
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.environments.leases import EnvironmentState
from remotegpu.reconciler.environments.results import PinnedImage, StepResult, fail, pinned, retry


def pin_is_current(env: EnvironmentState) -> bool:
    """Whether the recorded pin is for the spec's image and no `restart --pull` came after it."""
    return (
        env.image_digest is not None
        and env.image_pinned_reference == env.spec.image
        and (env.image_pinned_generation or 0) >= env.image_pull_generation
    )


def pin_image(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult | None:
    """Resolve and record the digest when the image needs one; None when the pin holds (or the image's
    registry is not configured, or the spec already names a digest)."""
    if ctx.registries is None or pin_is_current(env):
        return None
    host, repository, tag, digest = split_image(env.spec.image)
    if digest is not None or tag is None:
        return None
    config = ctx.registries.for_host(host)
    if config is None:
        return None
    client = ctx.registries.client(config)
    try:
        resolved = client.resolve(repository, tag)
    except ReferenceGoneError:
        return fail(
            "ImageGone",
            f"{env.spec.image} no longer exists at registry {config.name}; pick another tag"
            " (`remotegpu get images`) and apply the spec again",
        )
    except RegistryUnavailableError as error:  # messages name the registry and call, never a credential
        return retry("RegistryUnavailable", str(error))
    except RegistryAuthError as error:
        return retry("RegistryAuthFailed", f"{error}; an admin must fix the registry's login")
    finally:
        client.close()
    return pinned(PinnedImage(env.spec.image, resolved.digest, env.generation))


def pod_image(env: EnvironmentState) -> str:
    """The image the pod runs: `host/repository@digest` when pinned for the spec's image, else the
    spec's reference as written."""
    if env.image_digest is None or env.image_pinned_reference != env.spec.image:
        return env.spec.image
    host, repository, _, _ = split_image(env.spec.image)
    return f"{host}/{repository}@{env.image_digest}"
