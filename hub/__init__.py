"""Publishing to the Hugging Face Hub: tokens, repo ids, atomic pushes, `publish-dataset`, and
which repo a local dataset folder was published to (`published_repo_id`).

Light to import (trainer/ and evaluation/ import it to read a token): the dataset card's heavy
dependencies load only when `publish_dataset` runs.
"""

from taskdecomp.hub.publish import (
    check_write_access,
    dataset_url,
    publish_dataset,
    published_repo_id,
    push_files,
    resolve_token,
    validate_repo_id,
)

__all__ = [
    "resolve_token",
    "validate_repo_id",
    "push_files",
    "publish_dataset",
    "dataset_url",
    "published_repo_id",
    "check_write_access",
]
