# Seed: /work/shared/seeds/000_8a7939156532ff46.txt ("Client Management" > "Creating Clients"), verbatim.
# Substituted: http://localhost:2906 -> ${BASE_URL}; your-admin-key -> ${ADMIN_KEY}. Nothing else.

# Create a new client via Admin API
curl -X POST ${BASE_URL}/admin/v1/clients \
  -H "Authorization: Bearer ${ADMIN_KEY}" \
  -H "Content-Type: application/json" \
  -d '{
    "client_id": "prod-app-001",
    "api_key": "sk-prod-app-key-123",
    "description": "Production mobile application",
    "allowed_providers": ["openai", "anthropic"]
  }'
