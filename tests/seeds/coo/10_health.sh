# Seed: /work/shared/seeds/003_4a16fe1a8956e745.txt ("Production Deployment Checklist", step 5 "Test system";
# the same command is step 2 of "Response Procedures"), verbatim.
# Substituted: http://localhost:2906 -> ${BASE_URL}. Nothing else.

# 5. Test system
curl ${BASE_URL}/health
