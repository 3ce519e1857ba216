# Seed: /work/shared/seeds/000_8a7939156532ff46.txt ("Integration Examples" > "Terraform Integration"),
# verbatim. Not run by Terraform: tests/api/test_compat_coo.py reads the request (url, method, headers,
# body) from this file and sends it as written. Substituted at that time: http://coo-llm:2906 -> the server
# under test, ${var.admin_key} -> an admin key, random_password.api_key.result -> 32 random letters and
# digits (what `random_password` with length 32 and special = false produces).

resource "http_request" "coo_llm_client" {
  url    = "http://coo-llm:2906/admin/v1/clients"
  method = "POST"

  headers = {
    Authorization = "Bearer ${var.admin_key}"
    Content-Type  = "application/json"
  }

  body = jsonencode({
    client_id         = "terraform-client"
    api_key           = random_password.api_key.result
    description       = "Managed by Terraform"
    allowed_providers = ["openai", "anthropic"]
  })
}

resource "random_password" "api_key" {
  length  = 32
  special = false
}
