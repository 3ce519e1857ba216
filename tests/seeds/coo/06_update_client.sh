# Seed: /work/shared/seeds/000_8a7939156532ff46.txt ("Client Management" > "Updating Clients"), verbatim.
# Substituted: http://localhost:2906 -> ${BASE_URL}; your-admin-key -> ${ADMIN_KEY}. Nothing else.

# Update client configuration
curl -X PUT ${BASE_URL}/admin/v1/clients/prod-app-001 \
  -H "Authorization: Bearer ${ADMIN_KEY}" \
  -H "Content-Type: application/json" \
  -d '{
    "description": "Updated production mobile app",
    "allowed_providers": ["openai", "anthropic", "gemini"]
  }'
