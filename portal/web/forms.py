"""Form submissions of the portal pages, with and without JavaScript: the one way a page answers a
posted form.

A form built with the ``hx_form`` macro (``templates/_form.html``) posts normally without JavaScript
and through htmx with it. Its handler answers with:

- :func:`refused`: the form again with its field errors; for htmx only the form's fragment, with
  ``HX-Retarget``/``HX-Reswap`` so it replaces the form in place (any status: the layout's htmx
  configuration swaps 4xx answers); without JavaScript the whole page with the errors inline.
- :func:`portal.web.pages.redirect` on success: ``303`` to the next page, or for htmx ``204`` with
  ``HX-Redirect`` (a ``303`` would be followed inside the XHR and its page swapped into the form).

Errors that no form handles (404, 403, 500, an expired CSRF token) reach the router's error handlers,
which answer htmx with a message fragment retargeted to the page's ``#flashes`` (:func:`error_toast`).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.response import Template

from portal.web.pages import is_htmx, render

__all__ = ["FLASHES_TARGET", "error_toast", "form_page", "refused"]

FLASHES_TARGET = "#flashes"


async def refused(
    request: Request[Any, Any, Any],
    template: str,
    context: dict[str, Any],
    *,
    fragment: str,
    target: str,
    status_code: int = 422,
) -> Template:
    """The refused form: the whole ``template`` page, or for htmx its ``fragment`` swapped over ``target``
    (a CSS selector, normally the form's own ``#id``)."""
    response = await render(request, template, context, fragment=fragment, status_code=status_code)
    if is_htmx(request):
        response.headers.update({"HX-Retarget": target, "HX-Reswap": "outerHTML"})
    return response


async def form_page(
    request: Request[Any, Any, Any],
    template: str,
    context: dict[str, Any],
    *,
    fragment: str,
    target: str,
    is_refused: bool,
    status_code: int = 422,
) -> Template:
    """A form's page: the whole ``template``, or when ``is_refused`` the refused form (:func:`refused`)."""
    if not is_refused:
        return await render(request, template, context)
    return await refused(
        request, template, context, fragment=fragment, target=target, status_code=status_code
    )


def error_toast(message: str, status_code: int, *, title: str = "Error") -> Template:
    """An error nobody handled inline, as a message in the page's flash area (htmx requests only)."""
    return Template(
        template_name="_flashes.html",
        context={"flashes": [{"message": f"{title}: {message}", "kind": "error"}]},
        status_code=status_code,
        headers={"Vary": "HX-Request", "HX-Retarget": FLASHES_TARGET, "HX-Reswap": "innerHTML"},
    )
