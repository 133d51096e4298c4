export declare const TEST_DATABASE_URL: string;
export declare function postgresSchema(prefix: string): Promise<{ url: string; schema: string; drop: () => Promise<void> }>;
