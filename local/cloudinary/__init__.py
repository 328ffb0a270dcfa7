"""A local Cloudinary-compatible server: the parts of the Upload API and delivery
URLs that vidpipe's Cloudinary providers use, on loopback, with ffmpeg doing
the transformations. Point the SDK at it with ``upload_prefix`` (API) and a
``cname``/``secure_distribution`` (delivery); see ``app`` for the routes.
"""

from local.cloudinary.app import create_app
from local.cloudinary.settings import Settings

__all__ = ["Settings", "create_app"]
