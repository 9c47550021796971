CREATE TABLE `available_updates` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`gateway_id` text NOT NULL,
	`target` text NOT NULL,
	`version` text NOT NULL,
	`length` integer NOT NULL,
	`sha256` text NOT NULL,
	`custom` text NOT NULL,
	`listed` integer DEFAULT true NOT NULL,
	`seen_at` integer NOT NULL,
	FOREIGN KEY (`gateway_id`) REFERENCES `gateways`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `available_updates_gw_target_idx` ON `available_updates` (`gateway_id`,`target`);