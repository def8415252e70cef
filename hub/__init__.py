"""Publishing to the Hugging Face Hub: tokens, repo ids, atomic pushes, `publish-dataset`."""

from taskdecomp.hub.push import dataset_url, publish_dataset, push_files, resolve_token, validate_repo_id

__all__ = ["resolve_token", "validate_repo_id", "push_files", "publish_dataset", "dataset_url"]
