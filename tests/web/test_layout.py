"""The layout: navigation by role (a link only for what the person may see), flash messages."""

from __future__ import annotations

from tests.web.conftest import Ui


async def test_navigation_follows_the_role(ui: Ui) -> None:
    expectations = {
        "admin": {"Tenants", "Keys", "Models", "Credentials", "Spend", "Logs", "Audit"},
        "auditor": {"Tenants", "Keys", "Credentials", "Audit"},
        "member": {"Keys", "Spend", "Logs"},
    }
    for kind, wanted in expectations.items():
        async with ui.browser(kind) as browser:
            page = await browser.get("/account")
            assert page.status_code == 200
            nav = page.text.split('class="mainnav"')[1].split("</nav>")[0]
            shown = {
                label
                for label in ("Tenants", "Keys", "Models", "Credentials", "Grants", "Spend", "Logs", "Audit")
                if f">{label}<" in nav
            }
            assert wanted <= shown, (kind, shown)
    async with ui.browser("member") as member:
        nav = (await member.get("/account")).text.split('class="mainnav"')[1].split("</nav>")[0]
        assert ">Audit<" not in nav
        assert ">Grants<" not in nav
        assert ">Credentials<" not in nav
