-- The tenant a network name reveals (e.g. the Azure OpenAI resource of contoso.openai.azure.com),
-- kept apart from the plan so that policy can tell a corporate tenant from a personal account.
ALTER TABLE observations ADD COLUMN tenant TEXT;
