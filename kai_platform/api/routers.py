"""The project router: every app registers its viewsets here (in its ``urls.py``) and the
project urls serve the lot under /api/v1/ and /api/. Paths have no trailing slash; the
ApiPathMiddleware accepts one."""

from rest_framework.routers import SimpleRouter


class KaiRouter(SimpleRouter):
    def __init__(self) -> None:
        super().__init__(trailing_slash="")  # type: ignore[arg-type]


router = KaiRouter()
