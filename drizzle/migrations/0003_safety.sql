CREATE TABLE `safety_pins` (
	`gateway_id` text PRIMARY KEY NOT NULL,
	`pin_hash` text NOT NULL,
	`source` text NOT NULL,
	`failed_attempts` integer DEFAULT 0 NOT NULL,
	`locked_until` integer,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`gateway_id`) REFERENCES `gateways`(`id`) ON UPDATE no action ON DELETE no action
);
