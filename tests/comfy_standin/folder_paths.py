"""Stand-in for ComfyUI's folder_paths.py; tests put files into ``files``."""

from __future__ import annotations

#: {folder name: {file name: full path}}
files: dict[str, dict[str, str]] = {"loras": {}}


def get_filename_list(folder_name: str) -> list[str]:
    return sorted(files.get(folder_name, {}))


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    try:
        return files[folder_name][filename]
    except KeyError:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.") from None
