"""The dev container image: a tiny live ISO meeting the container image contract."""

from anweddol_actors.image.builder import (
    ImageBuildError,
    build_image,
    default_image_path,
    ensure_image,
    find_toolchain,
    image_is_current,
)

__all__ = [
    "ImageBuildError",
    "build_image",
    "default_image_path",
    "ensure_image",
    "find_toolchain",
    "image_is_current",
]
