"""One quick request to the Hub before anything slow: is a Hub `--dataset` / `--adapter` there?

evaluate-adapter and decompose both take Hub ids; `datasets` retries a dead endpoint for ~30 s
and a model would load before its adapter is found missing. This asks once (`repo_info`, 15 s
timeout) and turns the answer into one line.
"""

from __future__ import annotations

from taskdecomp.errors import HubError, InputError

__all__ = ["check_hub_repo"]


def check_hub_repo(repo_id: str, repo_type: str, flag: str) -> None:
    """`InputError` (missing, gated) or `HubError` (unreachable, error status), naming `flag`."""
    from huggingface_hub import HfApi, constants  # ~0.2 s: only for a Hub id

    # `HTTPError` is the base of the client's errors, connection failures included
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, HTTPError, RepositoryNotFoundError

    try:
        HfApi().repo_info(repo_id, repo_type=repo_type, timeout=15)
    except GatedRepoError:
        raise InputError(f"{flag} {repo_id} is gated on the Hub; accept its terms and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise InputError(
            f"{flag} {repo_id}: no such {repo_type} on the Hub at {constants.ENDPOINT} "
            "(or it is private: set HF_TOKEN); check the id or pass a local folder"
        ) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "an error"
        raise HubError(
            f"the Hub at {constants.ENDPOINT} answered {status} for {repo_id}; try again later"
        ) from None
    except (HTTPError, OSError):
        raise HubError(
            f"the Hub at {constants.ENDPOINT} is unreachable; check HF_ENDPOINT and the network, "
            f"or pass a local folder as {flag}"
        ) from None
