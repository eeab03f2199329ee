// A browser check of the deployed API; pipe does not run it.
export const smoke = true;
